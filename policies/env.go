package policies

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/adaptflow/adaptflow/process"
)

// Limits on the language, refused at compile time or stopped at run time.
const (
	// MaxExpressionLength bounds the source of one expression, in code points.
	MaxExpressionLength = 4096
	// CostLimit bounds the run-time cost of one evaluation.
	CostLimit = 100_000
)

// MaxCollectionSize is the size assumed for lists, maps and strings in the
// facts when the cost of an expression is estimated.
const MaxCollectionSize = 1000

// sizeBounds bounds every collection in the facts for cost estimation.
type sizeBounds struct{}

func (sizeBounds) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: MaxCollectionSize}
}

func (sizeBounds) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// FactNames are the variables every expression may read.
var FactNames = []string{"input", "process", "instance", "steps", "signals", "classification", "calendar", "reviews", "events"}

// Env is the CEL environment of adaptflow's expressions. It is safe for
// concurrent use and caches compiled expressions.
type Env struct {
	cel   *cel.Env
	cache sync.Map // source -> *Program
}

// NewEnv builds the environment with the declared facts.
func NewEnv() (*Env, error) {
	opts := []cel.EnvOption{
		cel.ParserExpressionSizeLimit(MaxExpressionLength),
		cel.CrossTypeNumericComparisons(true),
		// Keeps the source of macros, so a trace can show `items.exists(...)`.
		cel.EnableMacroCallTracking(),
	}
	for _, name := range FactNames {
		t := cel.MapType(cel.StringType, cel.DynType)
		if name == "reviews" {
			t = cel.ListType(cel.DynType)
		}
		opts = append(opts, cel.Variable(name, t))
	}
	e, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("policies: build CEL environment: %w", err)
	}
	return &Env{cel: e}, nil
}

// CompileError is a compile or type error with its position.
type CompileError struct {
	Expr    string
	Message string
}

func (e *CompileError) Error() string { return e.Message }

// Program is a compiled, type-checked expression.
type Program struct {
	Source string
	// bounded enforces the cost limit as it evaluates; fast does not, and
	// runs only on facts whose collections and strings are within the
	// sizes the compile-time estimate assumed, where that estimate (at most
	// CostLimit) already bounds the cost.
	bounded, fast cel.Program
	// nodes are the sub-expressions worth reporting, in source order; the
	// program records the value of nodes[i] in slot i as it evaluates.
	nodes []traceNode
}

type traceNode struct {
	id   int64
	text string
}

// Compile parses and type-checks src; wantBool requires a bool result.
func (e *Env) Compile(src string, wantBool bool) (*Program, error) {
	key := src
	if wantBool {
		key = "bool:" + src
	}
	if p, ok := e.cache.Load(key); ok {
		return p.(*Program), nil
	}
	if strings.TrimSpace(src) == "" {
		return nil, &CompileError{Expr: src, Message: "empty expression"}
	}
	a, iss := e.cel.Compile(src)
	if iss.Err() != nil {
		msg := strings.ReplaceAll(iss.Err().Error(), "<input>:", "")
		return nil, &CompileError{Expr: src, Message: strings.TrimPrefix(msg, "ERROR: ")}
	}
	if wantBool && a.OutputType() != cel.BoolType && a.OutputType() != cel.DynType {
		return nil, &CompileError{Expr: src, Message: fmt.Sprintf("expression yields %s, not bool", a.OutputType())}
	}
	est, err := e.cel.EstimateCost(a, sizeBounds{})
	if err != nil {
		return nil, &CompileError{Expr: src, Message: "cannot bound the cost of the expression: " + err.Error()}
	}
	if est.Max > CostLimit {
		return nil, &CompileError{Expr: src, Message: fmt.Sprintf(
			"expression may cost up to %d, over the limit of %d (collections in facts are assumed to hold up to %d items); loop over fewer items or avoid nested loops",
			est.Max, CostLimit, MaxCollectionSize)}
	}
	p := &Program{Source: src, nodes: traceNodes(a)}
	// Each planning gets a decorator of its own: it keeps state.
	plan := func(opts ...cel.ProgramOption) (cel.Program, error) {
		return e.cel.Program(a, append(opts, cel.CustomDecoratorV2(traceDecorator(p.nodes)), cel.EvalOptions(cel.OptOptimize))...)
	}
	if p.bounded, err = plan(cel.CostLimit(CostLimit)); err == nil {
		p.fast, err = plan()
	}
	if err != nil {
		return nil, &CompileError{Expr: src, Message: err.Error()}
	}
	e.cache.Store(key, p)
	return p, nil
}

// traceNodes picks the sub-expressions an explanation shows: each maximal
// read of a fact (`signals.order_volume.score`), each comparison or function
// call, in source order. Logical operators and literals are left out.
func traceNodes(a *cel.Ast) []traceNode {
	native := a.NativeRep()
	info := native.SourceInfo()
	var out []traceNode
	var walk func(e ast.Expr, parentIsSelect bool)
	walk = func(e ast.Expr, parentIsSelect bool) {
		switch e.Kind() {
		case ast.SelectKind:
			sel := e.AsSelect()
			if !parentIsSelect {
				out = appendNode(out, e, info)
			}
			walk(sel.Operand(), true)
		case ast.IdentKind:
			// A bare fact variable is a whole map: its value is noise in an
			// explanation. Other identifiers (comprehension variables) stay.
			if !parentIsSelect && !slices.Contains(FactNames, e.AsIdent()) {
				out = appendNode(out, e, info)
			}
		case ast.CallKind:
			call := e.AsCall()
			switch call.FunctionName() {
			case "_&&_", "_||_", "!_", "_?_:_":
			default:
				out = appendNode(out, e, info)
			}
			if call.IsMemberFunction() {
				walk(call.Target(), false)
			}
			for _, arg := range call.Args() {
				walk(arg, false)
			}
		case ast.ListKind:
			for _, el := range e.AsList().Elements() {
				walk(el, false)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				me := en.AsMapEntry()
				walk(me.Key(), false)
				walk(me.Value(), false)
			}
		case ast.ComprehensionKind:
			out = appendNode(out, e, info)
		}
	}
	walk(native.Expr(), false)
	return out
}

func appendNode(out []traceNode, e ast.Expr, info *ast.SourceInfo) []traceNode {
	text, err := cel.ExprToString(e, info)
	if err != nil {
		return out
	}
	for _, n := range out {
		if n.text == text {
			return out
		}
	}
	return append(out, traceNode{id: e.ID(), text: text})
}

// Result is the outcome of one evaluation.
type Result struct {
	Value any
	Err   error
	Trace []process.TraceStep
}

// Eval evaluates the program against vars (a map of the facts or an
// activation made once for several programs with [NewActivation]), tracing
// sub-expressions. The cost limit bounds the evaluation; a cancelled ctx
// stops it before it starts.
func (p *Program) Eval(ctx context.Context, vars any) Result {
	vals := make([]ref.Val, len(p.nodes))
	r := p.run(ctx, vars, vals)
	r.Trace, _ = p.trace(vals, nil)
	return r
}

// run evaluates the program, recording the values of its traced nodes in
// vals (len(p.nodes) long).
func (p *Program) run(ctx context.Context, vars any, vals []ref.Val) (r Result) {
	if err := ctx.Err(); err != nil {
		return Result{Err: err}
	}
	var act *Activation
	switch v := vars.(type) {
	case *Activation:
		act = v
	case map[string]any:
		act = NewActivation(v)
	default:
		return Result{Err: fmt.Errorf("policies: evaluate against %T, want map[string]any or *Activation", vars)}
	}
	prg := p.bounded
	if act.small {
		prg = p.fast
	}
	rec := recorders.Get().(*recorder)
	rec.Activation, rec.vals = act.vars, vals
	out, _, err := prg.Eval(rec)
	rec.Activation, rec.vals = nil, nil
	recorders.Put(rec)
	if err != nil {
		r.Err = err
	} else if v, cerr := native(out); cerr != nil {
		r.Err = cerr
	} else {
		r.Value = v
	}
	return r
}

// traced counts the nodes run recorded a value for in vals.
func traced(vals []ref.Val) int {
	n := 0
	for _, v := range vals {
		if v != nil {
			n++
		}
	}
	return n
}

// trace appends the trace of the values run recorded to buf and returns
// it, and buf. Nodes without a value were not evaluated (short-circuited,
// or folded away).
func (p *Program) trace(vals []ref.Val, buf []process.TraceStep) ([]process.TraceStep, []process.TraceStep) {
	start := len(buf)
	for i, n := range p.nodes {
		v := vals[i]
		if v == nil {
			continue
		}
		tv := process.TraceStep{Expr: n.text}
		if types.IsError(v) {
			tv.Error = errorText(v)
		} else if nv, err := native(v); err == nil {
			tv.Value = nv
		} else {
			tv.Error = err.Error()
		}
		buf = append(buf, tv)
	}
	return buf[start:len(buf):len(buf)], buf
}

// recorder is the activation one evaluation runs against: the facts, and
// the values of the traced sub-expressions as they are computed. This is
// what cel-go's state tracking does, but for the few nodes an explanation
// shows and without a map per evaluation.
type recorder struct {
	interpreter.Activation
	vals []ref.Val
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

// recorderOf finds the recorder beneath the scopes comprehensions push.
func recorderOf(a interpreter.Activation) *recorder {
	for a != nil {
		switch x := a.(type) {
		case *recorder:
			return x
		case *interpreter.ExecutionFrame:
			a = x.Activation
		default:
			a = a.Parent()
		}
	}
	return nil
}

// traceDecorator wraps the interpretables of the traced nodes so that they
// record their value in their slot. Planning is bottom-up, so the first
// interpretable decorated with a node's id is that node; the planner later
// decorates helpers with the same id (the relative attribute that selects
// or indexes into a traced node's value), which stay as they are. It keeps
// state: one decorator per planning.
func traceDecorator(nodes []traceNode) interpreter.InterpretableDecoratorV2 {
	slots := make(map[int64]int, len(nodes))
	for i, n := range nodes {
		slots[n.id] = i
	}
	return func(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
		slot, ok := slots[i.ID()]
		if !ok {
			return i, nil
		}
		delete(slots, i.ID())
		return &tracedNode{InterpretableV2: i, slot: slot}, nil
	}
}

// tracedNode records the value of a sub-expression. It is deliberately not an
// attribute: a qualifier the planner would add to a traced attribute would
// change the value it records, so selects and indexes over a traced node
// qualify its value instead.
type tracedNode struct {
	interpreter.InterpretableV2
	slot int
}

func (t *tracedNode) Eval(a interpreter.Activation) ref.Val {
	v := t.InterpretableV2.Eval(a)
	if r := recorderOf(a); r != nil {
		r.vals[t.slot] = v
	}
	return v
}

func (t *tracedNode) Exec(f *interpreter.ExecutionFrame) ref.Val {
	v := t.InterpretableV2.Exec(f)
	if r := recorderOf(f.Activation); r != nil {
		r.vals[t.slot] = v
	}
	return v
}

func errorText(v ref.Val) string {
	if e, ok := v.(*types.Err); ok {
		return e.Error()
	}
	return fmt.Sprint(v.Value())
}

// native converts a CEL value to plain JSON-able Go values.
func native(v ref.Val) (any, error) {
	switch v.Type() {
	case types.MapType, types.ListType:
		j, err := v.ConvertToNative(reflect.TypeFor[*structpb.Value]())
		if err != nil {
			return nil, err
		}
		return j.(*structpb.Value).AsInterface(), nil
	}
	switch x := v.Value().(type) {
	case types.Null:
		return nil, nil
	default:
		return x, nil
	}
}

// ErrNotBool is returned when a condition yields something other than a bool.
var ErrNotBool = errors.New("condition did not yield a bool")

// Activation is the facts of one decision point, prepared once for the
// evaluation of several programs.
type Activation struct {
	vars interpreter.Activation
	// small reports that every list, map and string in the facts holds at
	// most MaxCollectionSize items, as the cost estimate assumed.
	small bool
}

// NewActivation prepares the variables of several evaluations once.
func NewActivation(vars map[string]any) *Activation {
	a, _ := interpreter.NewActivation(vars) // a map is always accepted
	return &Activation{vars: a, small: withinSizeBounds(vars)}
}

// withinSizeBounds reports whether v is JSON-shaped data whose lists, maps
// and strings all hold at most MaxCollectionSize items (bytes, for strings,
// which is at least their length in code points). Any other value is not
// known to be within bounds.
func withinSizeBounds(v any) bool {
	switch x := v.(type) {
	case nil, bool, float64, int, int64, uint64, int32, uint32, json.Number:
		return true
	case string:
		return len(x) <= MaxCollectionSize
	case []any:
		if len(x) > MaxCollectionSize {
			return false
		}
		for _, e := range x {
			if !withinSizeBounds(e) {
				return false
			}
		}
		return true
	case map[string]any:
		if len(x) > MaxCollectionSize {
			return false
		}
		for k, e := range x {
			if len(k) > MaxCollectionSize || !withinSizeBounds(e) {
				return false
			}
		}
		return true
	}
	return false
}
