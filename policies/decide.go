package policies

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/adaptflow/adaptflow/process"
	"github.com/google/cel-go/common/types/ref"
)

// Set is the compiled policy set of one process, in resolution order.
type Set struct {
	policies []compiled
	// shadowed are the ids that have a shadow version, canary those whose
	// shadow version is a canary, with its share of the instances.
	shadowed map[string]bool
	canary   map[string]int
	// atStep lists, per step, the positions of the policies with an action
	// decided there or anywhere; anywhere those with step-less actions only.
	atStep   map[string][]int
	anywhere []int
}

type compiled struct {
	policy *process.Policy
	when   *Program
	// at indexes the actions decided before a step; anywhere are the
	// step-less ones (reviews and sets).
	at       map[string][]process.Action
	anywhere []process.Action
}

// CompilePolicy checks a policy against its process definition and compiles
// its condition. Errors name the field.
func (e *Env) CompilePolicy(p *process.Policy, def *process.Definition) (*Program, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if def != nil {
		if err := p.CheckAgainst(def); err != nil {
			return nil, err
		}
	}
	prg, err := e.Compile(p.When, true)
	if err != nil {
		var ce *CompileError
		if errors.As(err, &ce) {
			return nil, process.Errors{{Path: "when", Message: ce.Message}}
		}
		return nil, err
	}
	return prg, nil
}

// CheckDefinition compiles the expressions a definition carries: validate
// step assertions and http templates.
func (e *Env) CheckDefinition(d *process.Definition) error {
	var es process.Errors
	check := func(list string, steps []process.Step) {
		for i, s := range steps {
			path := fmt.Sprintf("%s[%d]", list, i)
			for j, a := range s.Assertions {
				if _, err := e.Compile(a, true); err != nil {
					es.Add(fmt.Sprintf("%s.assertions[%d]", path, j), "%s", err.Error())
				}
			}
			if s.HTTP != nil {
				for _, t := range templatesIn(s.HTTP) {
					if _, err := e.Compile(t.expr, false); err != nil {
						es.Add(path+".http."+t.field, "template ${%s}: %s", t.expr, err.Error())
					}
				}
			}
			if s.Process != nil {
				for _, t := range valueTemplates("input", map[string]any(s.Process.Input)) {
					if _, err := e.Compile(t.expr, false); err != nil {
						es.Add(path+".process."+t.field, "template ${%s}: %s", t.expr, err.Error())
					}
				}
			}
		}
	}
	check("steps", d.Steps)
	check("catalog", d.Catalog)
	return es.Err()
}

// NewSet compiles the policies of one process. Every policy must compile.
func (e *Env) NewSet(def *process.Definition, ps []*process.Policy) (*Set, error) {
	s := &Set{policies: make([]compiled, 0, len(ps)), shadowed: map[string]bool{}, canary: map[string]int{}}
	for _, p := range ps {
		if p.Mode == process.ModeShadow {
			s.shadowed[p.ID] = true
			if p.Percent > 0 {
				s.canary[p.ID] = p.Percent
			}
		}
		prg, err := e.CompilePolicy(p, nil)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", p.ID, err)
		}
		c := compiled{policy: p, when: prg, at: map[string][]process.Action{}}
		for _, a := range p.Actions {
			if step := a.At(); step != "" {
				c.at[step] = append(c.at[step], a)
			} else {
				c.anywhere = append(c.anywhere, a)
			}
		}
		s.policies = append(s.policies, c)
	}
	slices.SortFunc(s.policies, func(a, b compiled) int {
		if a.policy.Priority != b.policy.Priority {
			return b.policy.Priority - a.policy.Priority
		}
		if c := strings.Compare(a.policy.ID, b.policy.ID); c != 0 {
			return c
		}
		return strings.Compare(a.policy.Mode, b.policy.Mode) // active before shadow
	})
	s.atStep = map[string][]int{}
	for i, c := range s.policies {
		if len(c.anywhere) > 0 {
			s.anywhere = append(s.anywhere, i)
		}
	}
	for i, c := range s.policies {
		for step := range c.at {
			if len(c.anywhere) == 0 { // those are in every step's list already
				s.atStep[step] = append(s.atStep[step], i)
			}
		}
	}
	for step, idx := range s.atStep {
		idx = append(idx, s.anywhere...)
		slices.Sort(idx)
		s.atStep[step] = idx
	}
	return s, nil
}

// candidates are the positions of the policies with actions at step.
func (s *Set) candidates(step string) []int {
	if idx, ok := s.atStep[step]; ok {
		return idx
	}
	return s.anywhere
}

// Len is the number of policies in the set.
func (s *Set) Len() int { return len(s.policies) }

// Point is the state of an instance at a decision point that guardrails need.
type Point struct {
	// Step is the step about to run.
	Step string
	// Added are the catalog steps already added to the instance.
	Added []string
	// Reviews is how many reviews policies have opened for the instance.
	Reviews int
	// Fired are the policies whose step-less review has already been opened.
	Fired []string
	// Instance is the instance's id: it decides, once for all its
	// decisions, whether it gets a policy's canary version.
	Instance string
}

// InCanary reports whether instance gets the canary version of policy that
// applies to percent of the instances: a hash of the two, so an instance
// gets the same version at every decision, and each policy's canary its
// own share.
func InCanary(instance, policy string, percent int) bool {
	h := fnv.New32a()
	h.Write([]byte(instance))
	h.Write([]byte{0})
	h.Write([]byte(policy))
	return int(h.Sum32()%100) < percent
}

// Outcome is what a decision point resolved to.
type Outcome struct {
	Evaluations []process.Evaluation
	Applied     []process.AppliedAction
	Rejected    []process.Rejection
	// Shadow is set when the set has shadow versions: the outcome had they
	// been active in place of their active versions.
	Shadow *process.ShadowOutcome
}

type proposal struct {
	action *process.Action
	policy string
	order  int // position of the policy in resolution order
}

// Decide evaluates the policies relevant to the step of pt against vars,
// resolves conflicts and enforces the guardrails of def.
func (s *Set) Decide(ctx context.Context, def *process.Definition, vars map[string]any, pt Point) Outcome {
	idx := s.candidates(pt.Step)
	out := Outcome{Evaluations: make([]process.Evaluation, 0, len(idx))}
	act := NewActivation(vars)
	// The values the evaluations trace go to one scratch buffer, and their
	// traces to one slice.
	nodes := 0
	for _, i := range idx {
		nodes += len(s.policies[i].when.nodes)
	}
	sc := scratches.Get().(*scratch)
	sc.vals = slices.Grow(sc.vals[:0], nodes)
	props, shadowProps := sc.props[:0], sc.shadowProps[:0]
	for _, i := range idx {
		c := &s.policies[i]
		relevant := c.relevantActions(pt)
		if len(relevant) == 0 {
			continue
		}
		start := len(sc.vals)
		sc.vals = sc.vals[:start+len(c.when.nodes)]
		ev := evaluate(ctx, c, act, sc.vals[start:])
		if pct := s.canary[c.policy.ID]; pct > 0 {
			// The canary version applies to its share of the instances,
			// the active one is then only evaluated; elsewhere the other
			// way round.
			ev.Canary = pct
			if InCanary(pt.Instance, c.policy.ID, pct) {
				ev.Mode = otherRole(ev.Mode)
			}
		}
		out.Evaluations = append(out.Evaluations, ev)
		sc.traced = append(sc.traced, c)
		if !ev.Matched {
			continue
		}
		for j := range relevant {
			p := proposal{action: &relevant[j], policy: c.policy.ID, order: i}
			if ev.Mode == process.ModeShadow {
				shadowProps = append(shadowProps, p)
			} else {
				props = append(props, p)
			}
		}
	}
	trace := make([]process.TraceStep, 0, traced(sc.vals))
	off := 0
	for k, c := range sc.traced {
		n := len(c.when.nodes)
		out.Evaluations[k].Trace, trace = c.when.trace(sc.vals[off:off+n], trace)
		off += n
	}
	clear(sc.vals)
	clear(sc.traced)
	sc.traced = sc.traced[:0]
	out.Applied, out.Rejected = resolve(def, pt, props)
	if len(s.shadowed) > 0 {
		alt := slices.DeleteFunc(slices.Clone(props), func(p proposal) bool { return s.shadowed[p.policy] })
		alt = append(alt, shadowProps...)
		slices.SortStableFunc(alt, func(a, b proposal) int { return a.order - b.order })
		applied, rejected := resolve(def, pt, alt)
		out.Shadow = &process.ShadowOutcome{Applied: applied, Rejected: rejected}
	}
	sc.props, sc.shadowProps = clearProposals(props), clearProposals(shadowProps)
	scratches.Put(sc)
	return out
}

// otherRole swaps active and shadow: the roles of a policy's versions for
// an instance in its canary.
func otherRole(mode string) string {
	if mode == process.ModeShadow {
		return process.ModeActive
	}
	return process.ModeShadow
}

func clearProposals(ps []proposal) []proposal {
	clear(ps)
	return ps[:0]
}

// relevantActions are the policy's actions decided at pt, in the order the
// policy lists them.
func (c *compiled) relevantActions(pt Point) []process.Action {
	here := c.at[pt.Step]
	if len(c.anywhere) == 0 {
		return here
	}
	fired := slices.Contains(pt.Fired, c.policy.ID)
	out := make([]process.Action, 0, len(here)+len(c.anywhere))
	for _, a := range c.policy.Actions {
		switch at := a.At(); {
		case at == pt.Step:
		case at == "" && a.Kind() == process.ActionReview && fired:
			continue
		case at == "":
		default:
			continue
		}
		out = append(out, a)
	}
	return out
}

func evaluate(ctx context.Context, c *compiled, vars *Activation, vals []ref.Val) process.Evaluation {
	ev := process.Evaluation{
		PolicyID:      c.policy.ID,
		PolicyVersion: c.policy.Version,
		Mode:          process.ModeActive,
		When:          c.policy.When,
	}
	if c.policy.Mode == process.ModeShadow {
		ev.Mode = process.ModeShadow
	}
	r := c.when.run(ctx, vars, vals)
	switch {
	case r.Err != nil:
		ev.Error = r.Err.Error()
		ev.Matched = c.policy.OnError == process.OnErrorMatch
	default:
		b, ok := r.Value.(bool)
		if !ok {
			ev.Error = ErrNotBool.Error()
			ev.Matched = c.policy.OnError == process.OnErrorMatch
		} else {
			ev.Matched = b
		}
	}
	return ev
}

// scratch is what one Decide uses and gives back: the values the
// evaluations traced, and whose they are.
type scratch struct {
	vals               []ref.Val
	traced             []*compiled
	props, shadowProps []proposal
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

func resolve(def *process.Definition, pt Point, props []proposal) ([]process.AppliedAction, []process.Rejection) {
	if len(props) == 0 {
		return nil, nil
	}
	out := &Outcome{}
	limits := def.EffectiveLimits()
	added := slices.Clip(pt.Added) // an append copies: pt.Added is the caller's
	reviews := pt.Reviews
	skippedBy := ""
	var queues, vars map[string]string // review queue, route variable -> policy
	// Reasons are concatenated, not formatted: a decision point may reject
	// many proposals and this is its hot path.
	reject := func(p proposal, reason string) {
		if out.Rejected == nil {
			out.Rejected = make([]process.Rejection, 0, len(props))
		}
		out.Rejected = append(out.Rejected, process.Rejection{Action: *p.action, PolicyID: p.policy, Reason: reason})
	}
	apply := func(p proposal) {
		out.Applied = append(out.Applied, process.AppliedAction{Action: *p.action, PolicyID: p.policy})
	}
	for _, p := range props {
		a := p.action
		switch a.Kind() {
		case process.ActionSkip:
			step, _ := def.Step(a.Skip)
			switch {
			case step.Mandatory:
				reject(p, "step "+a.Skip+" is mandatory: no policy may skip it")
			case skippedBy != "":
				reject(p, "step "+a.Skip+" is already skipped by policy "+skippedBy)
			default:
				skippedBy = p.policy
				apply(p)
			}
		case process.ActionAdd:
			_, inCatalog := def.CatalogStep(a.Add)
			switch {
			case !inCatalog:
				reject(p, "step "+a.Add+" is not in the catalog of "+def.Ref()+": only catalog steps can be added")
			case slices.Contains(added, a.Add):
				reject(p, "step "+a.Add+" was already added to this instance: a step is added at most once")
			case len(added) >= limits.MaxAddedSteps:
				reject(p, "limit of "+strconv.Itoa(limits.MaxAddedSteps)+" added steps per instance reached")
			default:
				added = append(added, a.Add)
				apply(p)
			}
		case process.ActionReview:
			if by, dup := queues[a.Review.Queue]; dup {
				reject(p, "a review in queue "+a.Review.Queue+" is already opened at this step by policy "+by)
				continue
			}
			if reviews >= limits.MaxReviews {
				reject(p, "limit of "+strconv.Itoa(limits.MaxReviews)+" reviews per instance reached")
				continue
			}
			reviews++
			if queues == nil {
				queues = map[string]string{}
			}
			queues[a.Review.Queue] = p.policy
			apply(p)
		case process.ActionSet:
			if by, dup := vars[a.Set.Name]; dup {
				reject(p, "variable "+a.Set.Name+" is set by policy "+by+", which takes precedence")
				continue
			}
			if vars == nil {
				vars = map[string]string{}
			}
			vars[a.Set.Name] = p.policy
			apply(p)
		}
	}
	return out.Applied, out.Rejected
}
