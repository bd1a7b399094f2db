package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/adaptflow/adaptflow/process"
)

// The steps report reads the plan and reviews of every saved state in
// its window, a million of them for a month of a busy process. Decoding
// them with encoding/json took about 15 µs each (the report of a million
// instances: 17 s, past the request's timeout from about two million);
// scanStepState reads the same fields in a single pass over the bytes,
// skipping everything else without building it.

// stepState is what the report reads of a saved state.
type stepState struct {
	Plan    []reportStep
	Reviews []string // the step of each review
}

// maxSeen bounds the strings a stateScanner keeps: a report reads the
// few ids and states of a process's steps, but a state may hold others.
const maxSeen = 10_000

// errStateSyntax is a state the scanner cannot read.
var errStateSyntax = errors.New("invalid JSON")

// stateScanner reads saved states, one after another; the strings they
// hold (ids, kinds, states) are kept once across them.
type stateScanner struct {
	seen map[string]string
}

// scanStepState reads the plan and the reviews' steps of a saved state,
// as json.Unmarshal into {plan, reviews: [{step}]} would (the same
// field names, matched as it matches them; null leaves a field empty; a
// value of the wrong type is an error).
func (ss *stateScanner) scanStepState(data []byte) (stepState, error) {
	if ss.seen == nil {
		ss.seen = map[string]string{}
	}
	s := scanner{b: data, seen: ss.seen}
	var st stepState
	err := s.state(&st)
	if err == nil {
		if s.ws(); s.i != len(s.b) {
			err = s.fail("data after the value")
		}
	}
	if err != nil {
		return stepState{}, err
	}
	return st, nil
}

// state reads the top object.
func (s *scanner) state(st *stepState) error {
	return s.fields(func(key []byte) error {
		switch {
		case bytes.EqualFold(key, []byte("plan")):
			return list(s, &st.Plan, s.step)
		case bytes.EqualFold(key, []byte("reviews")):
			return list(s, &st.Reviews, s.review)
		}
		return s.skip()
	})
}

// fields reads an object (or null), calling field with each key; field
// reads the key's value.
func (s *scanner) fields(field func(key []byte) error) error {
	if null, err := s.enter('{'); null || err != nil {
		return err
	}
	for first := true; ; first = false {
		key, more, err := s.key('}', first)
		if !more || err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
	}
}

// list reads an array into *xs as encoding/json reads one into a slice:
// null empties it, and a key given twice is read again into what the
// first left, element by element.
func list[T any](s *scanner, xs *[]T, elem func(*T) error) error {
	null, err := s.enter('[')
	if null {
		*xs = nil
	}
	if null || err != nil {
		return err
	}
	*xs = (*xs)[:0]
	for first := true; ; first = false {
		if more, err := s.elem(first); !more || err != nil {
			return err
		}
		var x T
		if i := len(*xs); i < cap(*xs) {
			x = (*xs)[:i+1][i]
		}
		if err := elem(&x); err != nil {
			return err
		}
		*xs = append(*xs, x)
	}
}

// review reads the step of one review (or null, which leaves it).
func (s *scanner) review(step *string) error {
	return s.fields(func(key []byte) error {
		if bytes.EqualFold(key, []byte("step")) {
			return s.str(step)
		}
		return s.skip()
	})
}

// step reads one step of a plan (or null, which leaves it).
func (s *scanner) step(p *reportStep) error {
	return s.fields(func(key []byte) error {
		switch {
		case bytes.EqualFold(key, []byte("id")):
			return s.str(&p.ID)
		case bytes.EqualFold(key, []byte("kind")):
			k := string(p.Kind)
			err := s.str(&k)
			p.Kind = process.StepKind(k)
			return err
		case bytes.EqualFold(key, []byte("origin")):
			return s.str(&p.Origin)
		case bytes.EqualFold(key, []byte("added_by")):
			return s.str(&p.AddedBy)
		case bytes.EqualFold(key, []byte("state")):
			return s.str(&p.State)
		case bytes.EqualFold(key, []byte("skipped_by")):
			return s.str(&p.SkippedBy)
		case bytes.EqualFold(key, []byte("started_at")):
			return s.time(&p.StartedAt)
		case bytes.EqualFold(key, []byte("finished_at")):
			return s.time(&p.FinishedAt)
		}
		return s.skip()
	})
}

// scanner walks JSON bytes.
type scanner struct {
	b []byte
	i int
	// seen holds the strings read so far (stateScanner.seen).
	seen map[string]string
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w at byte %d: %s", errStateSyntax, s.i, what)
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// null consumes a null, if that is what comes next.
func (s *scanner) null() bool {
	s.ws()
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return true
	}
	return false
}

// enter opens an object or array (open is its brace or bracket), or
// reads a null.
func (s *scanner) enter(open byte) (null bool, err error) {
	if s.null() {
		return true, nil
	}
	if s.i >= len(s.b) || s.b[s.i] != open {
		return false, s.fail("not an object or array")
	}
	s.i++
	return false, nil
}

// elem moves to an array's next element: false at its end.
func (s *scanner) elem(first bool) (bool, error) {
	s.ws()
	if s.i >= len(s.b) {
		return false, s.fail("unended array")
	}
	if s.b[s.i] == ']' && first {
		s.i++
		return false, nil
	}
	if !first {
		switch s.b[s.i] {
		case ']':
			s.i++
			return false, nil
		case ',':
			s.i++
		default:
			return false, s.fail("no comma or bracket after an element")
		}
	}
	return true, nil
}

// key moves to an object's next key and reads it, with its colon: false
// at the object's end.
func (s *scanner) key(close byte, first bool) ([]byte, bool, error) {
	s.ws()
	if s.i >= len(s.b) {
		return nil, false, s.fail("unended object")
	}
	if s.b[s.i] == close && first {
		s.i++
		return nil, false, nil
	}
	if !first {
		switch s.b[s.i] {
		case close:
			s.i++
			return nil, false, nil
		case ',':
			s.i++
			s.ws()
		default:
			return nil, false, s.fail("no comma or brace after a value")
		}
	}
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false, s.fail("not a key")
	}
	end, escaped, err := s.strEnd()
	if err != nil {
		return nil, false, err
	}
	key := s.b[s.i+1 : end-1]
	if escaped || !ascii(key) {
		var k string
		if err := json.Unmarshal(s.b[s.i:end], &k); err != nil {
			return nil, false, s.fail(err.Error())
		}
		key = []byte(k)
	}
	s.i = end
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		return nil, false, s.fail("no colon after a key")
	}
	s.i++
	return key, true, nil
}

// strEnd is the index just past the string that starts at s.i (a quote),
// and whether it holds an escape.
func (s *scanner) strEnd() (int, bool, error) {
	escaped := false
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			return j + 1, escaped, nil
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return 0, false, s.fail("control character in a string")
		}
	}
	return 0, false, s.fail("unended string")
}

// rawStr reads a string into *into.
func (s *scanner) rawStr(into *string) error {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return s.fail("not a string")
	}
	end, escaped, err := s.strEnd()
	if err != nil {
		return err
	}
	if raw := s.b[s.i+1 : end-1]; !escaped && ascii(raw) {
		v, ok := s.seen[string(raw)]
		if !ok {
			v = string(raw)
			if len(s.seen) < maxSeen {
				s.seen[v] = v
			}
		}
		*into = v
	} else if err := json.Unmarshal(s.b[s.i:end], into); err != nil {
		// Escapes, or bytes encoding/json would replace: it reads them.
		return s.fail(err.Error())
	}
	s.i = end
	return nil
}

// str reads a string value, or null (which leaves *into as it is).
func (s *scanner) str(into *string) error {
	if s.null() {
		return nil
	}
	return s.rawStr(into)
}

// time reads a time as time.Time's UnmarshalJSON does; null clears it.
func (s *scanner) time(into **time.Time) error {
	if s.null() {
		*into = nil
		return nil
	}
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return s.fail("a time is not a string")
	}
	end, _, err := s.strEnd()
	if err != nil {
		return err
	}
	t := new(time.Time)
	if err := t.UnmarshalJSON(s.b[s.i:end]); err != nil {
		return s.fail(err.Error())
	}
	*into = t
	s.i = end
	return nil
}

// skip passes over one value of any kind, checking its syntax.
func (s *scanner) skip() error {
	s.ws()
	if s.i >= len(s.b) {
		return s.fail("no value")
	}
	switch c := s.b[s.i]; {
	case c == '{' || c == '[':
		s.i++
		for first := true; ; first = false {
			var more bool
			var err error
			if c == '{' {
				_, more, err = s.key('}', first)
			} else {
				more, err = s.elem(first)
			}
			if !more || err != nil {
				return err
			}
			if err := s.skip(); err != nil {
				return err
			}
		}
	case c == '"':
		end, _, err := s.strEnd()
		if err != nil {
			return err
		}
		// A string's escapes are checked as encoding/json would check them.
		if err := checkString(s.b[s.i:end]); err != nil {
			return s.fail(err.Error())
		}
		s.i = end
		return nil
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
				s.i += len(lit)
				return nil
			}
		}
		return s.fail("unknown literal")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return s.fail("unexpected character")
}

// number passes over a number, checking it is one JSON allows.
func (s *scanner) number() error {
	start := s.i
	if s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case digits() == 0:
		return s.fail("not a number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.fail("no digits after a decimal point")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.fail("no digits in an exponent")
		}
	}
	if s.i == start {
		return s.fail("not a number")
	}
	return nil
}

// checkString checks a quoted string's escapes.
func checkString(q []byte) error {
	for j := 1; j < len(q)-1; j++ {
		if q[j] != '\\' {
			continue
		}
		j++
		switch q[j] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		case 'u':
			if j+4 >= len(q) {
				return errors.New("short \\u escape")
			}
			for _, h := range q[j+1 : j+5] {
				if (h < '0' || h > '9') && (h|0x20 < 'a' || h|0x20 > 'f') {
					return errors.New("bad \\u escape")
				}
			}
			j += 4
		default:
			return errors.New("bad escape")
		}
	}
	return nil
}

// ascii is whether b is ASCII (the usual ids and states), which a string
// can take as it is.
func ascii(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
