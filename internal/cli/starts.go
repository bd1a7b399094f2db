package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// batchBytes is how large the body of one request of `instances start
// -f` may grow (the API takes 1 MiB by default).
const batchBytes = 900 << 10

// maxRateWaits is how often a batch the rate limit refused is sent again,
// after the wait the server asks for.
const maxRateWaits = 10

// startLine is one line of a start file: an instance to start.
type startLine struct {
	BusinessKey string          `json:"business_key"`
	Input       json.RawMessage `json:"input,omitempty"`
	line        int
}

// readStarts reads a start file (JSON lines of {"business_key", "input"};
// blank lines and lines starting with # are passed over), whole, so that a
// line that is not such an object stops the run before anything starts.
func readStarts(r io.Reader) ([]startLine, error) {
	var out []startLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), batchBytes)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		var s startLine
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("line %d: not an object {\"business_key\", \"input\"}: %w", n, err)
		}
		if strings.TrimSpace(s.BusinessKey) == "" {
			return nil, fmt.Errorf("line %d: business_key is required", n)
		}
		s.line = n
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", len(out)+1, err)
	}
	return out, nil
}

// startFile starts the instances a file lists, in batches through POST
// /v1/processes/{name}/instances/batch, and says how each that did not
// start went. Each start is idempotent by its business key, so a run
// stopped midway (or a failed one) is run again whole. It fails when any
// start did.
func startFile(ctx context.Context, r *remote, processName string, version, size int, file string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adaptflow instances start: %v\n", err)
		return 1
	}
	in := io.Reader(os.Stdin)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		in = f
	}
	lines, err := readStarts(in)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", file, err))
	}
	var created, existing, failed int
	path := "/v1/processes/" + url.PathEscape(processName) + "/instances/batch"
	for len(lines) > 0 {
		batch, body := nextBatch(lines, version, size)
		lines = lines[len(batch):]
		var res struct {
			Results []struct {
				BusinessKey string `json:"business_key"`
				Status      int    `json:"status"`
				Instance    struct {
					ID string `json:"id"`
				} `json:"instance"`
				Error struct {
					Message string `json:"message"`
				} `json:"error"`
			} `json:"results"`
		}
		if err := r.postPaced(ctx, path, body, &res); err != nil {
			fmt.Fprintf(stdout, "created %d, existing %d, failed %d; %d not sent\n", created, existing, failed, len(batch)+len(lines))
			return fail(fmt.Errorf("lines %d to %d: %w (every start is idempotent: run it again)", batch[0].line, batch[len(batch)-1].line, err))
		}
		for i, s := range res.Results {
			switch s.Status {
			case 201:
				created++
			case 200:
				existing++
			default:
				failed++
				fmt.Fprintf(stdout, "line %d (business key %s): %d %s\n", batch[i].line, s.BusinessKey, s.Status, s.Error.Message)
			}
		}
	}
	fmt.Fprintf(stdout, "created %d, existing %d, failed %d\n", created, existing, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// postPaced POSTs body to path as JSON, and again, after the wait the
// server asks for, while the key's rate limit refuses it (429), up to
// maxRateWaits times.
func (r *remote) postPaced(ctx context.Context, path string, body []byte, out any) error {
	err := r.do(ctx, "POST", path, "application/json", body, nil, out)
	var re *remoteError
	for waits := 0; errors.As(err, &re) && re.status == http.StatusTooManyRequests && waits < maxRateWaits; waits++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(re.retryAfter, time.Second)):
		}
		err = r.do(ctx, "POST", path, "application/json", body, nil, out)
	}
	return err
}

// nextBatch is the longest run of lines from the first that fits one
// request of at most size starts, and its body.
func nextBatch(lines []startLine, version, size int) ([]startLine, []byte) {
	var b bytes.Buffer
	if version > 0 {
		fmt.Fprintf(&b, `{"version":%d,"instances":[`, version)
	} else {
		b.WriteString(`{"instances":[`)
	}
	n := 0
	for n < len(lines) && n < size {
		item, _ := json.Marshal(lines[n])
		if n > 0 && b.Len()+len(item)+3 > batchBytes {
			break
		}
		if n > 0 {
			b.WriteByte(',')
		}
		b.Write(item)
		n++
	}
	b.WriteString("]}")
	return lines[:n], b.Bytes()
}
