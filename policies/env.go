package policies

import (
	"context"
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
var FactNames = []string{"input", "process", "instance", "steps", "signals", "classification", "calendar", "reviews"}

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
	prg    cel.Program
	// nodes are the sub-expressions worth reporting, in source order.
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
	prg, err := e.cel.Program(a,
		cel.EvalOptions(cel.OptTrackState, cel.OptOptimize),
		cel.CostLimit(CostLimit),
	)
	if err != nil {
		return nil, &CompileError{Expr: src, Message: err.Error()}
	}
	p := &Program{Source: src, prg: prg, nodes: traceNodes(a)}
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
	if err := ctx.Err(); err != nil {
		return Result{Err: err}
	}
	out, det, err := p.prg.Eval(vars)
	var r Result
	if err != nil {
		r.Err = err
	} else if v, cerr := native(out); cerr != nil {
		r.Err = cerr
	} else {
		r.Value = v
	}
	if det != nil && det.State() != nil {
		st := det.State()
		r.Trace = make([]process.TraceStep, 0, len(p.nodes))
		for _, n := range p.nodes {
			v, ok := st.Value(n.id)
			if !ok {
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
			r.Trace = append(r.Trace, tv)
		}
	}
	return r
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

// NewActivation prepares the variables of several evaluations once.
func NewActivation(vars map[string]any) (any, error) {
	return interpreter.NewActivation(vars)
}
