package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adaptflow/adaptflow/ml/classify"
	"github.com/adaptflow/adaptflow/store"
)

const examplesUsage = `usage:
  adaptflow examples import --classifier NAME -f FILE [--batch 200]
                              add the labeled examples of a text,category CSV (as ml eval reads it; - is stdin)
  adaptflow examples list --classifier NAME [--label L] [--source S] [--text T] [--limit 100] [--after CURSOR] [--json]
                              a page of the stored examples, newest first, and how many of each label
  adaptflow examples export --classifier NAME [--label L] [--source S] [--text T] > examples.csv
                              every stored example the filters keep, as the text,category CSV import reads
  adaptflow examples delete --classifier NAME (--label L | --source S | --text T ... | --all)
                              delete the stored examples the filters keep (an import undone: --source api:KEY-NAME), in one go
Filters: --source review (every reviewer's), review:NAME, api (added through the API), api:KEY-NAME;
--text keeps the texts that hold it, regardless of case.
Through a running server's API (--server, --api-key: an engineer key; list and export: a reviewer's too).`

// Examples runs `adaptflow examples`: a classifier's labeled examples,
// imported from a file or listed, through a running server's API.
func Examples(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sub, fs, ok := subcommand("examples", args, []string{"import", "list", "export", "delete"}, examplesUsage, stderr)
	if !ok {
		return 2
	}
	rf := addRemoteFlags(fs, "engineer")
	classifier := fs.String("classifier", "", "the classifier (its name in the definition's classify.name)")
	file := fs.String("f", "", "import: the CSV file, with the columns text and category (- for stdin)")
	size := fs.Int("batch", 200, "import: examples a request (1 to 1000; each counts against the key's rate limit, 200 a second with bursts of 400 by default)")
	asJSON := fs.Bool("json", false, "list: print the server's JSON")
	label := fs.String("label", "", "list, export: only the examples of this label")
	source := fs.String("source", "", "list, export: only the examples of this source (review, review:NAME, api, api:KEY-NAME)")
	text := fs.String("text", "", "list, export: only the examples whose text holds this, regardless of case")
	limit := fs.Int("limit", 100, "list: examples per page (1 to 1000)")
	after := fs.String("after", "", "list: the cursor the previous page printed (more: --after ...)")
	all := fs.Bool("all", false, "delete: every stored example of the classifier (its seed examples stay)")
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return 2
	}
	if *rf.key == "" || *classifier == "" || len(pos) != 0 || (sub == "import") != (*file != "") || *size < 1 || *size > 1000 || *limit < 1 || *limit > store.MaxExamplePage {
		fmt.Fprintln(stderr, examplesUsage)
		return 2
	}
	if sub == "delete" && *all == (*label != "" || *source != "" || *text != "") {
		fmt.Fprintln(stderr, "adaptflow examples delete: give --label, --source or --text, or --all alone")
		return 2
	}
	r := rf.remote()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adaptflow examples %s: %v\n", sub, err)
		return 1
	}
	path := "/v1/classifiers/" + url.PathEscape(*classifier) + "/examples"
	q := url.Values{}
	for k, v := range map[string]string{"label": *label, "source": *source, "q": *text} {
		if v != "" {
			q.Set(k, v)
		}
	}
	switch sub {
	case "list":
		q.Set("limit", strconv.Itoa(*limit))
		if *after != "" {
			q.Set("after", *after)
		}
		var raw json.RawMessage
		if err := r.do(ctx, "GET", path+"?"+q.Encode(), "", nil, nil, &raw); err != nil {
			return fail(err)
		}
		if *asJSON {
			_, _ = fmt.Fprintln(stdout, string(raw))
			return 0
		}
		var page examplePage
		if err := json.Unmarshal(raw, &page); err != nil {
			return fail(err)
		}
		printExamples(stdout, page)
		return 0
	case "delete":
		if *all {
			q.Set("all", "true")
		}
		var res struct {
			Deleted int `json:"deleted"`
		}
		if err := r.do(ctx, "DELETE", path+"?"+q.Encode(), "", nil, nil, &res); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "deleted %d examples of %s\n", res.Deleted, *classifier)
		return 0
	case "export":
		q.Set("limit", strconv.Itoa(store.MaxExamplePage))
		w := csv.NewWriter(stdout)
		_ = w.Write([]string{"text", "category"})
		for {
			var page examplePage
			if err := r.do(ctx, "GET", path+"?"+q.Encode(), "", nil, nil, &page); err != nil {
				return fail(err)
			}
			for _, e := range page.Examples {
				_ = w.Write([]string{e.Text, e.Label})
			}
			if page.Next == "" {
				break
			}
			q.Set("after", page.Next)
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return fail(err)
		}
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

// examplePage is a page of GET /v1/classifiers/{name}/examples.
type examplePage struct {
	Examples []store.Example `json:"examples"`
	Labels   map[string]int  `json:"labels"`
	Total    int             `json:"total"`
	Next     string          `json:"next"`
}

// printExamples prints a page of examples, the count of each label (the
// most taught first), and the cursor of the next page.
func printExamples(w io.Writer, page examplePage) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLABEL\tSOURCE\tADDED\tTEXT")
	for _, e := range page.Examples {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.Label, e.Source, e.CreatedAt.Local().Format(time.DateTime), oneLine(e.Text, 60))
	}
	_ = tw.Flush()
	if page.Next != "" {
		fmt.Fprintf(w, "more: --after %s\n", page.Next)
	}
	labels := slices.Collect(maps.Keys(page.Labels))
	slices.SortFunc(labels, func(a, b string) int {
		return cmp.Or(page.Labels[b]-page.Labels[a], strings.Compare(a, b))
	})
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s %d", l, page.Labels[l])
	}
	fmt.Fprintf(w, "%d stored examples: %s\n", page.Total, strings.Join(parts, ", "))
}

// oneLine is s on one line, cut to n runes.
func oneLine(s string, n int) string {
	s = string(bytes.Join(bytes.Fields([]byte(s)), []byte(" ")))
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
