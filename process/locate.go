package process

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxLocated caps the problems locate reports for one document.
const maxLocated = 20

// locate walks a document that failed to decode into a value of type t and
// names the fields at fault by their path (`steps[0].timeout`): unknown
// fields, with the known one nearest in spelling, and values of the wrong
// kind. yaml.v3 reports these with a line number only. It finds nothing
// for a document that is not valid YAML at all.
func locate(doc *yaml.Node, t reflect.Type) Errors {
	var es Errors
	locateIn(doc, t, "", &es)
	return es
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func locateIn(n *yaml.Node, t reflect.Type, path string, es *Errors) {
	if len(*es) >= maxLocated {
		return
	}
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) == 1 {
			n = n.Content[0]
		} else {
			return
		}
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Tag == "!!null" || t.Kind() == reflect.Interface {
		return
	}
	custom := reflect.PointerTo(t).Implements(unmarshalerType)
	switch {
	case custom:
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			at := joinPath(path, key)
			f, ok := fields[key]
			if !ok {
				hint := ""
				if near := nearest(key, fields); near != "" {
					hint = fmt.Sprintf("; did you mean %q?", near)
				}
				es.Add(at, "unknown field (line %d%s)", n.Content[i].Line, hint)
				continue
			}
			locateIn(n.Content[i+1], f, at, es)
		}
		return
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			locateIn(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), es)
		}
		return
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			locateIn(c, t.Elem(), path+"["+strconv.Itoa(i)+"]", es)
		}
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		got := n.Value
		switch n.Kind {
		case yaml.MappingNode:
			got = "an object"
		case yaml.SequenceNode:
			got = "a list"
		default:
			got = strconv.Quote(got)
		}
		if custom {
			es.Add(path, "%s (got %s, line %d)", strings.TrimPrefix(err.Error(), "yaml: "), got, n.Line)
			return
		}
		es.Add(path, "must be %s (got %s, line %d)", kindWord(t), got, n.Line)
	}
}

// yamlFields maps the keys a struct type reads (its yaml tags, inline
// structs' too) to their types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// nearest is the known key closest to key in spelling, if it is close
// enough to be a slip (at most a third of its letters off).
func nearest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", len(key)/3+1
	for k := range fields {
		if d := editDistance(key, k); d < bestD || d == bestD && best != "" && k < best {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
