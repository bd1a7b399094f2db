package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/store"
)

const examplesUsage = `usage:
  adaptflow examples import --classifier NAME -f FILE [--batch 200]
                              add the labeled examples of a text,category CSV (as ml eval reads it; - is stdin)
  adaptflow examples list --classifier NAME [--json]
Through a running server's API (--server, --api-key: an engineer key; list: a reviewer's too).`

// Examples runs `adaptflow examples`: a classifier's labeled examples,
// imported from a file or listed, through a running server's API.
func Examples(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, fs, ok := subcommand("examples", args, []string{"import", "list"}, examplesUsage, stderr)
	if !ok {
		return 2
	}
	rf := addRemoteFlags(fs, "engineer")
	classifier := fs.String("classifier", "", "the classifier (its name in the definition's classify.name)")
	file := fs.String("f", "", "import: the CSV file, with the columns text and category (- for stdin)")
	size := fs.Int("batch", 200, "import: examples a request (1 to 1000; each counts against the key's rate limit, 200 a second with bursts of 400 by default)")
	asJSON := fs.Bool("json", false, "list: print the server's JSON")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if *rf.key == "" || *classifier == "" || len(pos) != 0 || (sub == "import") != (*file != "") || *size < 1 || *size > 1000 {
		fmt.Fprintln(stderr, examplesUsage)
		return 2
	}
	r := rf.remote()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adaptflow examples %s: %v\n", sub, err)
		return 1
	}
	path := "/v1/classifiers/" + url.PathEscape(*classifier) + "/examples"
	if sub == "list" {
		var raw json.RawMessage
		if err := r.do(ctx, "GET", path, "", nil, nil, &raw); err != nil {
			return fail(err)
		}
		if *asJSON {
			_, _ = fmt.Fprintln(stdout, string(raw))
			return 0
		}
		var v struct{ Examples []store.Example }
		if err := json.Unmarshal(raw, &v); err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tLABEL\tSOURCE\tADDED\tTEXT")
		for _, e := range v.Examples {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.Label, e.Source, e.CreatedAt.Local().Format(time.DateTime), oneLine(e.Text, 60))
		}
		_ = tw.Flush()
		return 0
	}
	in := io.Reader(os.Stdin)
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		in = f
	}
	examples, err := classify.ReadCSV(in)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", *file, err))
	}
	if len(examples) == 0 {
		return fail(fmt.Errorf("%s holds no examples", *file))
	}
	// A text named twice: the last label counts, as it would one by one.
	last := make(map[string]int, len(examples))
	for i, e := range examples {
		last[e.Text] = i
	}
	var unique []classify.Example
	for i, e := range examples {
		if last[e.Text] == i {
			unique = append(unique, e)
		}
	}
	added, pending := 0, 0
	for start := 0; start < len(unique); start += *size {
		batch := unique[start:min(start+*size, len(unique))]
		items := make([]map[string]string, len(batch))
		for i, e := range batch {
			items[i] = map[string]string{"text": e.Text, "label": e.Label}
		}
		body, _ := json.Marshal(map[string]any{"examples": items})
		var res struct {
			Examples         int  `json:"examples"`
			EmbeddingPending bool `json:"embedding_pending"`
		}
		if err := r.postPaced(ctx, path+"/batch", body, &res); err != nil {
			fmt.Fprintf(stdout, "added %d of %d examples\n", added, len(unique))
			return fail(fmt.Errorf("examples %d to %d: %w (adding an example again changes nothing: run it again)", start+1, start+len(batch), err))
		}
		added += res.Examples
		if res.EmbeddingPending {
			pending += res.Examples
		}
	}
	fmt.Fprintf(stdout, "added %d examples to %s", added, *classifier)
	if n := len(examples) - len(unique); n > 0 {
		fmt.Fprintf(stdout, " (%d texts named again: their last label counts)", n)
	}
	if pending > 0 {
		fmt.Fprintf(stdout, "; %d wait for their embedding (the embeddings provider did not answer; the server adds them)", pending)
	}
	fmt.Fprintln(stdout)
	return 0
}

// oneLine is s on one line, cut to n runes.
func oneLine(s string, n int) string {
	s = string(bytes.Join(bytes.Fields([]byte(s)), []byte(" ")))
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
