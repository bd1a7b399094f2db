package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// readEnv are the environment variables the binary reads, from its source.
func readEnv(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?:envOr|envInt|os\.Getenv|os\.LookupEnv)\("([A-Z0-9_]+)"`).FindAllSubmatch(src, -1) {
		names[string(m[1])] = true
	}
	if !names["DATABASE_URL"] || !names["TEMPORAL_TLS_CERT"] {
		t.Fatalf("environment variables read: %v", names)
	}
	return names
}

// yamlDocs are the documents of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// dig follows keys (and, for a number, list indexes) through nested YAML.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, x.(string))
	}
	return out
}

// checkArgs runs the binary's flag parsing on a container's arguments: a
// command or a flag it does not know fails.
func checkArgs(t *testing.T, where string, args []string) {
	t.Helper()
	var out bytes.Buffer
	if code := run(append(slices.Clone(args), "--help"), &out, &out); code != 0 {
		t.Errorf("%s: adaptflow %s: exit %d\n%s", where, strings.Join(args, " "), code, out.String())
	}
}

// The deployment files only use commands, flags and environment variables
// the binary knows, and the kustomizations name files that exist:
// Kubernetes (base and the Temporal Cloud overlay) and docker-compose.yml.
func TestDeploymentFiles(t *testing.T) {
	env := readEnv(t)
	checkEnv := func(where, name string) {
		if !env[name] {
			t.Errorf("%s: the binary does not read %s", where, name)
		}
	}
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "deploy", "kubernetes", "*", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("manifests %v, %v", files, err)
	}
	containers := 0
	for _, path := range files {
		dir, name := filepath.Dir(path), filepath.Base(path)
		if name == "tls.yaml" { // a JSON patch that adds environment variables
			raw, _ := os.ReadFile(path)
			var ops []map[string]any
			if err := yaml.Unmarshal(raw, &ops); err != nil {
				t.Fatal(err)
			}
			for _, op := range ops {
				if strings.HasSuffix(op["path"].(string), "/env") {
					for _, e := range op["value"].([]any) {
						checkEnv(path, e.(map[string]any)["name"].(string))
					}
				}
			}
			continue
		}
		for _, doc := range yamlDocs(t, path) {
			if name == "kustomization.yaml" {
				refs := strs(dig(doc, "resources"))
				for i := 0; dig(doc, "patches", i) != nil; i++ {
					refs = append(refs, dig(doc, "patches", i, "path").(string))
				}
				for i := 0; dig(doc, "configMapGenerator", i) != nil; i++ {
					for _, e := range strs(dig(doc, "configMapGenerator", i, "envs")) {
						refs = append(refs, e)
						checkEnvFile(t, filepath.Join(dir, e), checkEnv)
					}
					for _, l := range strs(dig(doc, "configMapGenerator", i, "literals")) {
						checkEnv(path, strings.SplitN(l, "=", 2)[0])
					}
				}
				for _, r := range refs {
					if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
						t.Errorf("%s names %s: %v", path, r, err)
					}
				}
				continue
			}
			if doc["kind"] == "Secret" {
				for k := range dig(doc, "stringData").(map[string]any) {
					checkEnv(path, k)
				}
			}
			if doc["kind"] != "Job" && doc["kind"] != "Deployment" {
				continue
			}
			for i := 0; dig(doc, "spec", "template", "spec", "containers", i) != nil; i++ {
				c := dig(doc, "spec", "template", "spec", "containers", i)
				containers++
				checkArgs(t, path, strs(dig(c, "args")))
				for j := 0; dig(c, "env", j) != nil; j++ {
					checkEnv(path, dig(c, "env", j, "name").(string))
				}
			}
		}
	}
	if containers != 3 {
		t.Errorf("%d adaptflow containers in the manifests, want 3 (migrate, server, worker)", containers)
	}
	compose := yamlDocs(t, filepath.Join(root, "docker-compose.yml"))[0]
	for name, svc := range compose["services"].(map[string]any) {
		if dig(svc, "build", "dockerfile") != "deploy/Dockerfile" {
			continue
		}
		checkArgs(t, "docker-compose.yml "+name, strs(dig(svc, "command")))
		for k := range dig(svc, "environment").(map[string]any) {
			checkEnv("docker-compose.yml "+name, k)
		}
	}
}

// checkEnvFile checks the names of a KEY=value file, commented ones too.
func checkEnvFile(t *testing.T, path string, check func(where, name string)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "#"))
		if k, _, ok := strings.Cut(line, "="); ok && regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			check(path, k)
		}
	}
}

// knownMetrics says whether a metric (or a histogram's or summary's
// series) is one adaptflow or the Temporal SDK exports, and returns the
// names of both, as their sources spell them.
func knownMetrics(t *testing.T, root string) (known func(string) bool, ours, sdk map[string]bool) {
	t.Helper()
	ours = map[string]bool{}
	for _, dir := range []string{"api", "activities", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			for _, m := range regexp.MustCompile(`"(adaptflow_[a-z_]+)"`).FindAllSubmatch(src, -1) {
				ours[string(m[1])] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The Temporal SDK's, from its constants, as internal/sdkmetrics names
	// them (counters end in _total, timers in _seconds).
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.temporal.io/sdk").Output()
	if err != nil {
		t.Fatal(err)
	}
	consts, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "internal", "common", "metrics", "constants.go"))
	if err != nil {
		t.Fatal(err)
	}
	sdk = map[string]bool{}
	for _, m := range regexp.MustCompile(`TemporalMetricsPrefix \+ "([a-z_]+)"`).FindAllSubmatch(consts, -1) {
		sdk["temporal_"+string(m[1])] = true
	}
	known = func(name string) bool {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			name = strings.TrimSuffix(name, suffix)
		}
		if strings.HasPrefix(name, "adaptflow_") {
			return ours[name]
		}
		return sdk[name] || sdk[strings.TrimSuffix(name, "_seconds")] || sdk[strings.TrimSuffix(name, "_total")]
	}
	return known, ours, sdk
}

// findPromtool is Prometheus's promtool: in CI it must be there
// (scripts/test.sh unpacks it); elsewhere, without it, what checks
// says is not checked, and it returns "".
func findPromtool(t *testing.T, checks string) string {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is missing (scripts/test.sh unpacks it from Debian's prometheus package)")
		}
		t.Logf("promtool is not installed here: %s is not checked", checks)
		return ""
	}
	return promtool
}

// metricNames are the adaptflow and Temporal metrics a PromQL expression
// names.
var metricNames = regexp.MustCompile(`\b(?:adaptflow|temporal)_[a-z_]+`)

// The alerting rules name only metrics adaptflow or the Temporal SDK
// exports, and each rule has a name, an expression and a summary.
func TestAlertRules(t *testing.T) {
	root := filepath.Join("..", "..")
	doc := yamlDocs(t, filepath.Join(root, "deploy", "prometheus", "alerts.yaml"))[0]
	known, ours, sdk := knownMetrics(t, root)
	names := map[string]bool{}
	rules := 0
	for g := 0; dig(doc, "groups", g) != nil; g++ {
		for r := 0; dig(doc, "groups", g, "rules", r) != nil; r++ {
			rule := dig(doc, "groups", g, "rules", r)
			name, _ := dig(rule, "alert").(string)
			expr, _ := dig(rule, "expr").(string)
			summary, _ := dig(rule, "annotations", "summary").(string)
			if name == "" || expr == "" || summary == "" || names[name] {
				t.Errorf("rule %d of group %d: name %q, expression %q, summary %q (names must be unique)", r, g, name, expr, summary)
			}
			names[name] = true
			rules++
			for _, metric := range metricNames.FindAllString(expr, -1) {
				if !known(metric) {
					t.Errorf("%s: no metric %s is exported", name, metric)
				}
			}
		}
	}
	if rules < 5 || !ours["adaptflow_signal_observations_total"] || !sdk["temporal_activity_schedule_to_start_latency"] {
		t.Fatalf("%d rules; adaptflow metrics %d, SDK metrics %d", rules, len(ours), len(sdk))
	}
	// Their PromQL and templates, as Prometheus reads them.
	promtool := findPromtool(t, "the rules' PromQL")
	if promtool == "" {
		return
	}
	if out, err := exec.Command(promtool, "check", "rules", filepath.Join(root, "deploy", "prometheus", "alerts.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// And what they do, on series given in alerts_test.yaml.
	test := exec.Command(promtool, "test", "rules", "alerts_test.yaml")
	test.Dir = filepath.Join(root, "deploy", "prometheus")
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// The Grafana dashboard's panels query only metrics adaptflow or the
// Temporal SDK exports, with PromQL Prometheus parses (checked by promtool
// as recording rules, Grafana's variables put in), and use only the
// dashboard's variables.
func TestGrafanaDashboard(t *testing.T) {
	root := filepath.Join("..", "..")
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "adaptflow.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string `json:"uid"`
		Title      string `json:"title"`
		Templating struct {
			List []struct{ Name string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string          `json:"type"`
			Title   string          `json:"title"`
			GridPos json.RawMessage `json:"gridPos"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Fatalf("uid %q, title %q", dash.UID, dash.Title)
	}
	vars := map[string]bool{"__rate_interval": true}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
	}
	known, _, _ := knownMetrics(t, root)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	queries := 0
	for i, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || len(p.GridPos) == 0 || len(p.Targets) == 0 {
			t.Errorf("panel %d: title %q, %d queries, gridPos %s", i, p.Title, len(p.Targets), p.GridPos)
		}
		for _, q := range p.Targets {
			queries++
			for _, metric := range metricNames.FindAllString(q.Expr, -1) {
				if !known(metric) {
					t.Errorf("%s: no metric %s is exported", p.Title, metric)
				}
			}
			for _, v := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(q.Expr, -1) {
				if !vars[v[1]] {
					t.Errorf("%s: no variable %s", p.Title, v[1])
				}
			}
			expr := strings.NewReplacer("$__rate_interval", "5m", "$process", ".*", "$queue", ".*").Replace(q.Expr)
			fmt.Fprintf(&rules, "      - record: dashboard:query_%d\n        expr: %s\n", queries, strconv.Quote(expr))
		}
	}
	if queries < 10 {
		t.Fatalf("%d queries", queries)
	}
	promtool := findPromtool(t, "the dashboard's PromQL")
	if promtool == "" {
		return
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules (the dashboard's queries): %v\n%s", err, out)
	}
}

// The Kubernetes manifests decode strictly into the API's own types, as
// the API server would take them: no misspelt or misplaced field, no
// quantity, port or probe of the wrong form.
func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "deploy", "kubernetes", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]func() any{
		"apps/v1 Deployment":                     func() any { return &appsv1.Deployment{} },
		"batch/v1 Job":                           func() any { return &batchv1.Job{} },
		"v1 Service":                             func() any { return &corev1.Service{} },
		"v1 Secret":                              func() any { return &corev1.Secret{} },
		"v1 ConfigMap":                           func() any { return &corev1.ConfigMap{} },
		"policy/v1 PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
		"autoscaling/v2 HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	}
	decoded := 0
	for _, path := range files {
		if filepath.Base(path) == "kustomization.yaml" || filepath.Base(path) == "tls.yaml" {
			continue // kustomize's, and a JSON patch (TestDeploymentFiles)
		}
		for i, doc := range yamlDocs(t, path) {
			kind := fmt.Sprintf("%v %v", doc["apiVersion"], doc["kind"])
			newObj, ok := kinds[kind]
			if !ok {
				t.Errorf("%s, document %d: %s is not a kind this test knows; add it", path, i+1, kind)
				continue
			}
			raw, err := json.Marshal(doc)
			if err != nil {
				t.Fatalf("%s, document %d: %v", path, i+1, err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(newObj()); err != nil {
				t.Errorf("%s, document %d (%s): %v", path, i+1, kind, err)
			}
			decoded++
		}
	}
	if decoded < 9 {
		t.Fatalf("%d manifests decoded, want the 9 of deploy/kubernetes", decoded)
	}
}
