package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"gopkg.in/yaml.v3"
)

// openAPIYAML is the API's contract. The server checks every request
// against it before a handler runs.
//
//go:embed openapi.yaml
var openAPIYAML []byte

// OpenAPI is the API's OpenAPI 3.1 document as JSON, as /openapi.json
// serves it.
func OpenAPI() []byte { return mustContract().json }

// contract is the loaded document and, per route, what a request to it may
// carry.
type contract struct {
	json []byte
	// ops is keyed by method and gin path: "POST /v1/processes/:name/instances".
	ops map[string]*operation
}

type operation struct {
	params map[string]*param // by name; path and query parameters
	// prefixed are the query parameters whose name is a prefix and a
	// name of the caller's (input.FIELD), by prefix: x-adaptflow-prefix.
	prefixed map[string]*param
	body     *bodySpec // nil: the route takes no body
}

type param struct {
	name, in string
	required bool
	integer  bool // the value is parsed as an integer before it is checked
	schema   *jsonschema.Schema
}

type bodySpec struct {
	required bool
	types    []string // media types, the first is assumed when none is sent
	schema   map[string]*jsonschema.Schema
}

const contractURL = "https://adaptflow.dev/openapi.json"

// theContract is the embedded document, loaded on first use (by New or
// OpenAPI), not by every program that imports the package.
var theContract = sync.OnceValues(func() (*contract, error) { return loadContract(openAPIYAML) })

func mustContract() *contract {
	c, err := theContract()
	if err != nil {
		panic(err) // the embedded document is checked by the tests
	}
	return c
}

// loadContract reads the document and compiles the schema of every
// parameter and request body.
func loadContract(doc []byte) (*contract, error) {
	var raw any
	if err := yaml.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	js, err := json.Marshal(raw)
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	if err := comp.AddResource(contractURL, root); err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	d := docReader{comp: comp}
	d.top, _ = root.(map[string]any)
	paths, _ := d.top["paths"].(map[string]any)
	c := &contract{json: js, ops: map[string]*operation{}}
	for path, item := range paths {
		methods, _ := item.(map[string]any)
		for method, o := range methods {
			od, _ := o.(map[string]any)
			op, err := d.operation(path, method, od)
			if err != nil {
				return nil, fmt.Errorf("openapi: %s %s: %w", method, path, err)
			}
			c.ops[strings.ToUpper(method)+" "+ginPath(path)] = op
		}
	}
	return c, nil
}

// docReader reads operations out of the document and compiles their
// schemas, which are addressed by their place in it.
type docReader struct {
	top  map[string]any
	comp *jsonschema.Compiler
}

func (d docReader) compile(tokens ...string) (*jsonschema.Schema, error) {
	var b strings.Builder
	b.WriteString(contractURL + "#")
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return d.comp.Compile(b.String())
}

// resolve follows a $ref to components/kind, returning the component and
// its name; v itself when it is no reference.
func (d docReader) resolve(kind string, v any) (map[string]any, string) {
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m, ""
	}
	name, _ := strings.CutPrefix(ref, "#/components/"+kind+"/")
	comps, _ := d.top["components"].(map[string]any)
	defs, _ := comps[kind].(map[string]any)
	m, _ = defs[name].(map[string]any)
	return m, name
}

func (d docReader) operation(path, method string, od map[string]any) (*operation, error) {
	op := &operation{params: map[string]*param{}}
	ps, _ := od["parameters"].([]any)
	for i, p := range ps {
		at := []string{"paths", path, method, "parameters", strconv.Itoa(i)}
		pd, ref := d.resolve("parameters", p)
		if ref != "" {
			at = []string{"components", "parameters", ref}
		}
		if pd == nil {
			return nil, fmt.Errorf("unknown parameter %v", p)
		}
		name, _ := pd["name"].(string)
		in, _ := pd["in"].(string)
		if in == "header" {
			continue
		}
		sch, err := d.compile(append(at, "schema")...)
		if err != nil {
			return nil, fmt.Errorf("parameter %s: %w", name, err)
		}
		required, _ := pd["required"].(bool)
		sd, _ := d.resolve("schemas", pd["schema"])
		p := &param{name: name, in: in, required: required, schema: sch, integer: sd["type"] == "integer"}
		if prefix, ok := pd["x-adaptflow-prefix"].(string); ok && in == "query" {
			if op.prefixed == nil {
				op.prefixed = map[string]*param{}
			}
			op.prefixed[prefix] = p
			continue
		}
		op.params[name] = p
	}
	rb, ok := od["requestBody"].(map[string]any)
	if !ok {
		return op, nil
	}
	required, _ := rb["required"].(bool)
	op.body = &bodySpec{required: required, schema: map[string]*jsonschema.Schema{}}
	content, _ := rb["content"].(map[string]any)
	for mt := range content {
		sch, err := d.compile("paths", path, method, "requestBody", "content", mt, "schema")
		if err != nil {
			return nil, fmt.Errorf("body %s: %w", mt, err)
		}
		op.body.types = append(op.body.types, mt)
		op.body.schema[mt] = sch
	}
	// JSON first (it trims to "", which sorts first): it is what a request
	// without a media type is read as.
	slices.SortFunc(op.body.types, func(a, b string) int {
		return strings.Compare(strings.TrimPrefix(a, "application/json"), strings.TrimPrefix(b, "application/json"))
	})
	return op, nil
}

// ginPath turns /v1/processes/{name} into /v1/processes/:name.
func ginPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			parts[i] = ":" + s[1:len(s)-1]
		}
	}
	return strings.Join(parts, "/")
}

// yamlTypes are the media types a YAML body may come as.
var yamlTypes = []string{"application/yaml", "application/x-yaml", "text/yaml"}

// check validates the request against its operation: path and query
// parameters, then the body. The body is read once and put back for the
// handler.
func (ct *contract) check(c *gin.Context) error {
	op := ct.ops[c.Request.Method+" "+c.FullPath()]
	if op == nil {
		return nil // only routes outside the document (none: a test sees to it)
	}
	for _, p := range c.Params {
		if err := op.params[p.Key].check(p.Value); err != nil {
			return err
		}
	}
	query := c.Request.URL.Query()
	for name, vs := range query {
		p := op.params[name]
		for prefix, pp := range op.prefixed {
			if p == nil && strings.HasPrefix(name, prefix) && len(name) > len(prefix) {
				p = pp
			}
		}
		if p == nil || p.in != "query" {
			return badRequest(name, "is not a parameter of this route")
		}
		if len(vs) > 1 {
			return badRequest(name, "is given %d times; give it once", len(vs))
		}
		if err := p.check(vs[0]); err != nil {
			return err
		}
	}
	for _, p := range op.params {
		if p.in == "query" && p.required && !query.Has(p.name) {
			return badRequest(p.name, "query parameter is required")
		}
	}
	if op.body == nil {
		return nil
	}
	b, err := readBody(c)
	if err != nil {
		return err
	}
	c.Request.Body = io.NopCloser(bytes.NewReader(b))
	if len(bytes.TrimSpace(b)) == 0 {
		if op.body.required {
			return badRequest("", "request body is required; send a %s document", op.body.types[0])
		}
		return nil
	}
	mt := c.ContentType()
	// YAML is a superset of JSON: a route that takes YAML reads a body
	// sent without a media type as YAML.
	if (mt == "" || slices.Contains(yamlTypes, mt)) && op.body.schema["application/yaml"] != nil {
		mt = "application/yaml"
	}
	if mt == "" {
		mt = op.body.types[0]
	}
	sch := op.body.schema[mt]
	if sch == nil {
		return &httpError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			msg: fmt.Sprintf("send the body as %s (got %s)", strings.Join(op.body.types, " or "), mt)}
	}
	v, err := decodeBody(mt, b)
	if err != nil {
		return err
	}
	return schemaError("", sch.Validate(v))
}

func (p *param) check(raw string) error {
	if p == nil {
		return nil
	}
	var v any = raw
	if p.integer {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return badRequest(p.name, "must be a whole number (got %q)", raw)
		}
		v = json.Number(strconv.FormatInt(n, 10))
	}
	return schemaError(p.name, p.schema.Validate(v))
}

// decodeBody reads a JSON or YAML body into the values the schema
// validator takes.
func decodeBody(mt string, b []byte) (any, error) {
	if mt == "application/yaml" {
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			return nil, badRequest("", "malformed YAML: %v", err)
		}
		js, err := json.Marshal(v)
		if err != nil {
			return nil, badRequest("", "the YAML document does not map to JSON: %v", err)
		}
		b = js
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badRequest("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return nil, badRequest("", "the body holds more than one JSON value")
	}
	return v, nil
}

var printer = message.NewPrinter(language.English)

// schemaError turns a validation error into a 400 naming the field: the
// first deepest problem, as a path such as input.amount or steps[2].id
// (prefix is the parameter the value came from).
func schemaError(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return badRequest(prefix, "%v", err)
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := slices.Clone(ve.InstanceLocation)
	var msg string
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		loc = append(loc, k.Missing[0])
		msg = "is required"
	case *kind.AdditionalProperties:
		loc = append(loc, k.Properties[0])
		msg = "is not a known field"
	case *kind.Enum:
		msg = "must be one of " + enumList(k.Want)
	case *kind.Type:
		msg = fmt.Sprintf("must be %s (got %s)", article(strings.Join(k.Want, " or ")), k.Got)
	case *kind.Minimum:
		msg = "must be at least " + k.Want.RatString()
	case *kind.Maximum:
		msg = "must be at most " + k.Want.RatString()
	case *kind.MinLength:
		msg = "must not be empty"
		if k.Want > 1 {
			msg = fmt.Sprintf("must be at least %d characters", k.Want)
		}
	case *kind.MaxLength:
		msg = fmt.Sprintf("must be at most %d characters (got %d)", k.Want, k.Got)
	case *kind.MinItems:
		msg = fmt.Sprintf("must list at least %d item(s)", k.Want)
	case *kind.Pattern:
		msg = fmt.Sprintf("must match %s (got %q)", k.Want, k.Got)
		if k.Want == durationPattern {
			msg = fmt.Sprintf("must be a duration such as 90s, 30m, 4h or 30d (got %q)", k.Got)
		}
	default:
		msg = ve.ErrorKind.LocalizedString(printer)
	}
	return badRequest(fieldPath(prefix, loc), "%s", msg)
}

// durationPattern is the Duration schema's pattern in the document.
const durationPattern = `^([0-9]+d|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$`

func article(t string) string {
	switch {
	case t == "object", t == "array", t == "integer":
		return "an " + t
	case strings.HasPrefix(t, "object"), strings.HasPrefix(t, "array"), strings.HasPrefix(t, "integer"):
		return "an " + t
	}
	return "a " + t
}

func enumList(want []any) string {
	out := make([]string, len(want))
	for i, w := range want {
		out[i] = fmt.Sprint(w)
	}
	return strings.Join(out, ", ")
}

// fieldPath renders a JSON location as a.b[2].c.
func fieldPath(prefix string, loc []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, t := range loc {
		if _, err := strconv.Atoi(t); err == nil {
			b.WriteString("[" + t + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(t)
	}
	return b.String()
}
