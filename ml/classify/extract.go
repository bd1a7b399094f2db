package classify

import (
	"maps"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// patterns caches compiled extraction patterns.
var patterns sync.Map // string → *regexp.Regexp (nil when it does not compile)

func pattern(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		re = nil
	}
	patterns.Store(p, re)
	return re
}

// ExtractByPatterns fills in fields, from text, each field of spec that has
// a pattern and no value yet (missing or null): the embedded path's
// extraction, and the LLM's where it found nothing. A pattern's first
// capture group (or its whole match) is the value: a string trimmed, a
// number read as people write amounts (see ParseNumber; null when it does
// not parse); a boolean field is whether the pattern matches. A string or
// number pattern that does not match gives null. The filled copy of
// fields (which may be nil) is returned; fields is left as it is.
func ExtractByPatterns(spec []Field, text string, given map[string]any) map[string]any {
	fields := make(map[string]any, len(spec))
	maps.Copy(fields, given)
	for _, f := range spec {
		if f.Pattern == "" || fields[f.Name] != nil {
			continue
		}
		re := pattern(f.Pattern)
		if re == nil {
			continue
		}
		m := re.FindStringSubmatch(text)
		if f.Type == "boolean" {
			fields[f.Name] = m != nil
			continue
		}
		fields[f.Name] = nil
		if m == nil {
			continue
		}
		v := strings.TrimSpace(m[len(m)-1])
		switch f.Type {
		case "string":
			if v != "" {
				fields[f.Name] = v
			}
		case "number":
			var mark byte
			if f.Decimal != "" {
				mark = f.Decimal[0]
			}
			if n, ok := ParseNumberWith(v, mark); ok {
				fields[f.Name] = n
			}
		}
	}
	return fields
}

// groupSeparators are dropped from a number wherever they are: spaces
// (plain, no-break, narrow no-break, thin), apostrophes (Swiss "1'250")
// and underscores.
var groupSeparators = strings.NewReplacer(" ", "", "\u00a0", "", "\u202f", "", "\u2009", "", "'", "", "\u2019", "", "_", "")

// ParseNumber reads a number as it is written in documents and messages,
// with either convention for the decimal mark:
//   - "1,250.50", "1.250,50", "1 250,50" and "1'250.50" are all 1250.5:
//     when both marks appear, the last one is the decimal mark;
//   - a mark that appears more than once groups thousands ("1.250.000");
//   - a lone comma is decimal unless exactly three digits follow it
//     ("12,5" is 12.5, "1,250" is 1250); a lone dot is decimal ("1.25");
//   - thousands are grouped by three (or by two then three, as in India's
//     "1,00,000"): "1..2" and "12.34.56" are not numbers.
//
// A leading sign is kept. It reports false for anything else.
func ParseNumber(s string) (float64, bool) { return ParseNumberWith(s, 0) }

// ParseNumberWith reads a number whose decimal mark is mark ('.' or ','),
// the other one grouping thousands: with ',', "1.250" is 1250 and "1,5"
// is 1.5. A mark of 0 tells it from the number, as ParseNumber does.
func ParseNumberWith(s string, mark byte) (float64, bool) {
	s = groupSeparators.Replace(strings.TrimSpace(s))
	sign := ""
	if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		sign, s = s[:1], s[1:]
	}
	if s == "" {
		return 0, false
	}
	dot, comma := strings.LastIndexByte(s, '.'), strings.LastIndexByte(s, ',')
	decimal := byte(0)
	switch {
	case mark != 0:
		switch strings.Count(s, string(mark)) {
		case 0:
		case 1:
			decimal = mark
		default:
			return 0, false
		}
	case dot >= 0 && comma >= 0:
		decimal = s[max(dot, comma)]
	case comma >= 0:
		if strings.Count(s, ",") == 1 && len(s)-comma-1 != 3 {
			decimal = ','
		}
	case dot >= 0:
		if strings.Count(s, ".") == 1 {
			decimal = '.'
		}
	}
	// Groups after a thousands separator have 2 or 3 digits (3, or the
	// 2s of Indian "1,00,000"), the last one 3.
	decimalAt := -1
	if decimal != 0 {
		decimalAt = strings.LastIndexByte(s, decimal)
	}
	var b strings.Builder
	group := -1 // digits since the last thousands separator; -1 before one
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
			if group >= 0 {
				group++
			}
		case i == decimalAt:
			if group >= 0 && group != 3 {
				return 0, false
			}
			group = -1
			b.WriteByte('.')
		case c == '.' || c == ',':
			if i == 0 || group >= 0 && group != 2 && group != 3 {
				return 0, false
			}
			group = 0
		default:
			return 0, false
		}
	}
	if group >= 0 && group != 3 {
		return 0, false
	}
	n, err := strconv.ParseFloat(sign+b.String(), 64)
	if err != nil {
		return 0, false
	}
	return n, true
}
