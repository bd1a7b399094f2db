// Command adaptflow is the single binary of adaptflow: `dev` runs everything
// in one process on embedded defaults; `server` and `worker` run the API and
// the worker against an external Temporal; `migrate` prepares the store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"
	_ "time/tzdata" // time zones of schedules and calendars, wherever the binary runs

	"github.com/adaptflow/adaptflow/internal/app"
	"github.com/adaptflow/adaptflow/internal/cli"
	"github.com/adaptflow/adaptflow/process"
	"github.com/adaptflow/adaptflow/store"
)

const usage = `adaptflow — adaptive process orchestration on Temporal

Usage:
  adaptflow dev      [flags]   everything in one process: embedded Temporal, store, worker, API
  adaptflow server   [flags]   the HTTP API, against an external Temporal
  adaptflow worker   [flags]   the worker, against an external Temporal
  adaptflow migrate  [status]  apply the store's schema migrations (status: list them)
  adaptflow policy test DIR                           run the test cases of the policies in DIR
  adaptflow policy simulate --process P --since 30d DIR
                                                      replay recorded decisions through DIR's policies (read-only)
  adaptflow policy diff  -f DIR                       compare DIR with a running server
  adaptflow policy apply -f DIR [--mode shadow]       create new versions of what changed
  adaptflow instances list --process P [--status S]   a process's instances, newest first
                                                      (show ID, cancel ID [--reason R] too; through a server's API)
  adaptflow process kpis NAME [--since 30d]           a process's KPIs (through a server's API; also list,
                                                      signals NAME, observations NAME SIGNAL as CSV)
  adaptflow webhooks list [--process P]               webhooks given up (redeliver ID, or --process P: all of them again)
  adaptflow examples import --classifier C -f FILE    add a classifier's labeled examples from a text,category CSV (list too)
  adaptflow audit verify                              check the hash chains of decisions and policy versions
  adaptflow prune [--older-than 400d] [--dry-run]     remove ended instances, observations and audit entries older than that
                                                      (and each definition's retention)
  adaptflow backup --out DIR                          copy the embedded SQLite store (and, in dev, Temporal's) while it runs
  adaptflow keys create --role R --name N [--processes a,b] [--expires-in 90d]
                                                      create an API key in the store (list, revoke ID too)
  adaptflow ml nab --data DIR [--out DIR] [--json]    run and score the anomaly detector on a NAB layout
  adaptflow ml eval --train FILE (--test FILE | --split 0.2 | --folds 10) [--json]
                                                      train and measure the embedded text classifier
  adaptflow healthcheck [--url URL]                   exit 0 when the server answers /healthz (for containers)
  adaptflow version            print the version

Run 'adaptflow <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "adaptflow", version())
		return 0
	case "healthcheck":
		return healthcheck(rest, stderr)
	case "policy", "audit", "ml", "keys", "instances", "process", "prune", "backup", "webhooks", "examples":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		switch cmd {
		case "policy":
			return cli.Policy(ctx, rest, stdout, stderr)
		case "ml":
			return cli.ML(ctx, rest, stdout, stderr)
		case "keys":
			return cli.Keys(ctx, rest, stdout, stderr)
		case "instances":
			return cli.Instances(ctx, rest, stdout, stderr)
		case "webhooks":
			return cli.Webhooks(ctx, rest, stdout, stderr)
		case "examples":
			return cli.Examples(ctx, rest, stdout, stderr)
		case "process":
			return cli.Process(ctx, rest, stdout, stderr)
		case "prune":
			return cli.Prune(ctx, rest, stdout, stderr)
		case "backup":
			return cli.Backup(ctx, rest, stdout, stderr)
		}
		return cli.Audit(ctx, rest, stdout, stderr)
	}
	var mode app.Mode
	switch cmd {
	case "dev":
		mode = app.ModeDev
	case "server":
		mode = app.ModeServer
	case "worker":
		mode = app.ModeWorker
	case "migrate":
	default:
		fmt.Fprintf(stderr, "adaptflow: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	opts := app.DefaultOptions()
	if cmd != "dev" {
		opts.LoadExamples = false
	}
	status := false
	if cmd == "migrate" && len(rest) > 0 && rest[0] == "status" {
		status, rest = true, rest[1:]
	}
	migrateAtStart := true
	fs := flag.NewFlagSet("adaptflow "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.DataDir, "data-dir", envOr("ADAPTFLOW_DATA_DIR", opts.DataDir), "directory for the embedded store and Temporal's database")
	fs.StringVar(&opts.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "store: postgres://... or a SQLite file path (default DATA_DIR/adaptflow.db)")
	fs.IntVar(&opts.EmbeddingDim, "embedding-dim", envInt("ADAPTFLOW_EMBEDDING_DIM", 256), "dimension of example embeddings in the store (must match the embedding model)")
	logLevel := fs.String("log-level", envOr("ADAPTFLOW_LOG_LEVEL", "info"), "debug, info, warn or error")
	logFormat := fs.String("log-format", envOr("ADAPTFLOW_LOG_FORMAT", "text"), "text or json")
	if cmd != "migrate" {
		fs.StringVar(&opts.Listen, "listen", envOr("ADAPTFLOW_LISTEN", opts.Listen), "address of the HTTP API")
		fs.StringVar(&opts.TemporalAddress, "temporal-address", envOr("TEMPORAL_ADDRESS", opts.TemporalAddress), "Temporal frontend (dev: where the embedded one listens)")
		fs.StringVar(&opts.Namespace, "namespace", envOr("TEMPORAL_NAMESPACE", opts.Namespace), "Temporal namespace")
		fs.StringVar(&opts.APIKey, "api-key", os.Getenv("ADAPTFLOW_API_KEY"), "admin API key to accept (default: generate one and print it)")
		fs.StringVar(&opts.CalendarFile, "calendar", os.Getenv("ADAPTFLOW_CALENDAR"), "YAML file of calendar seasons (default: the embedded examples/calendar.yaml)")
		fs.BoolVar(&opts.LoadExamples, "examples", opts.LoadExamples, "register the embedded example processes and policies")
		fs.StringVar(&opts.WebhookSecret, "webhook-secret", os.Getenv("ADAPTFLOW_WEBHOOK_SECRET"), "secret that signs webhook bodies (X-Adaptflow-Signature, HMAC-SHA256)")
		fs.Float64Var(&opts.RateLimit, "rate-limit", opts.RateLimit, "requests per second one API key may make, with bursts of twice that (0: 200; negative: no limit)")
		if cmd == "dev" {
			fs.Func("retention", "how long the embedded Temporal server keeps a finished workflow's history (a failed instance can be retried until then), at least 1d (default 7d)", func(v string) error {
				d, err := process.ParseDuration(v)
				opts.Retention = d
				return err
			})
		}
		fs.DurationVar(&opts.ClaimLease, "claim-lease", opts.ClaimLease, "how long a reviewer's claim on a review lasts unless they ask for another lease")
		fs.DurationVar(&opts.StartWait, "start-wait", opts.StartWait, "how long a start request waits for Temporal before it answers 201 with the instance stored and finishes the start in the background (0: 10ms; negative: always wait)")
		fs.BoolVar(&migrateAtStart, "migrate", true, "apply the store's pending migrations at start")
		fs.StringVar(&opts.LLMBaseURL, "llm-base-url", os.Getenv("ADAPTFLOW_LLM_BASE_URL"), "OpenAI-compatible API for classification (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp); default: the embedded classifier")
		fs.StringVar(&opts.LLMModel, "llm-model", os.Getenv("ADAPTFLOW_LLM_MODEL"), "model name at --llm-base-url")
		fs.DurationVar(&opts.RequestTimeout, "request-timeout", opts.RequestTimeout, "how long an API request may take, 1s to 10m (a classification preview that takes longer, on a slow LLM or a first training, goes on: the same request again waits for its answer)")
		fs.DurationVar(&opts.LLMTimeout, "llm-timeout", opts.LLMTimeout, "how long one request to the LLM may take (a classification may make two: the answer and its repair), 1s to 4m")
		fs.StringVar(&opts.EmbeddingModel, "embedding-model", os.Getenv("ADAPTFLOW_EMBEDDING_MODEL"), "embeddings model at --llm-base-url for examples, few-shot retrieval and similar cases (its dimension must match --embedding-dim); default: the hashing embedding")
		fs.DurationVar(&opts.EmbeddingWait, "embedding-wait", opts.EmbeddingWait, "how long an API request or a classification waits for the embeddings provider (--embedding-model) before it goes on without (a review without similar cases, an example embedded later, few-shot examples picked by the hashing embedding); after a failure none asks it for 30s")
		fs.StringVar(&opts.OTLPEndpoint, "otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "send OpenTelemetry traces over OTLP/HTTP to this URL, e.g. http://collector:4318 (default: no tracing)")
		if cmd == "server" || cmd == "worker" {
			tlsOn, _ := strconv.ParseBool(os.Getenv("TEMPORAL_TLS"))
			fs.BoolVar(&opts.TemporalTLS.Enabled, "temporal-tls", tlsOn, "connect to Temporal over TLS, trusting the system's CAs (implied by the other --temporal-tls-* flags and by --temporal-api-key)")
			fs.StringVar(&opts.TemporalTLS.CertFile, "temporal-tls-cert", os.Getenv("TEMPORAL_TLS_CERT"), "client certificate (PEM) for mutual TLS with Temporal; read again at each connection, so a rotated one applies without a restart")
			fs.StringVar(&opts.TemporalTLS.KeyFile, "temporal-tls-key", os.Getenv("TEMPORAL_TLS_KEY"), "the client certificate's private key (PEM)")
			fs.StringVar(&opts.TemporalTLS.CAFile, "temporal-tls-ca", os.Getenv("TEMPORAL_TLS_CA"), "CA bundle (PEM) to trust for Temporal's certificate instead of the system's")
			fs.StringVar(&opts.TemporalTLS.ServerName, "temporal-tls-server-name", os.Getenv("TEMPORAL_TLS_SERVER_NAME"), "name Temporal's certificate must carry (default: the host of --temporal-address)")
			fs.StringVar(&opts.TemporalAPIKey, "temporal-api-key", os.Getenv("TEMPORAL_API_KEY"), "API key for Temporal (Temporal Cloud, or a cluster's authorizer), sent over TLS")
		}
		if cmd != "worker" {
			if v := os.Getenv("ADAPTFLOW_STORE_RETENTION"); v != "" {
				d, err := process.ParseDuration(v)
				if err != nil {
					fmt.Fprintf(stderr, "adaptflow %s: ADAPTFLOW_STORE_RETENTION: %v\n", cmd, err)
					return 2
				}
				opts.StoreRetention = d
			}
			fs.Func("store-retention", "prune from the store, every hour, instances that ended (with their decisions, reviews and verdicts), signal observations and audit entries older than this, e.g. 400d; at least 1d, and in dev at least --retention (default 0: keep everything)", func(v string) error {
				d, err := process.ParseDuration(v)
				opts.StoreRetention = d
				return err
			})
		}
		if cmd == "worker" {
			fs.StringVar(&opts.MetricsListen, "metrics-listen", os.Getenv("ADAPTFLOW_METRICS_LISTEN"), "where the worker serves /metrics and /healthz (default: nowhere)")
		} else {
			fs.StringVar(&opts.MetricsListen, "metrics-listen", os.Getenv("ADAPTFLOW_METRICS_LISTEN"), "serve /metrics (and /healthz) here, away from the API's clients, instead of on --listen (default: on --listen)")
		}
		fs.StringVar(&opts.LLMAPIKey, "llm-api-key", os.Getenv("ADAPTFLOW_LLM_API_KEY"), "API key of --llm-base-url")
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	opts.SkipMigrate = !migrateAtStart
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "adaptflow %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "adaptflow %s: %v\n", cmd, err)
		return 2
	}
	opts.Logger = logger
	opts.Out = stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case status:
		var list []store.Migration
		if list, err = app.MigrationStatus(ctx, opts); err == nil {
			for _, m := range list {
				at := "pending"
				if m.AppliedAt != nil {
					at = "applied " + m.AppliedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(stdout, "%4d  %-32s %s\n", m.Version, m.Name, at)
			}
		}
	case cmd == "migrate":
		err = app.Migrate(ctx, opts)
	default:
		err = app.Run(ctx, mode, opts)
	}
	if err != nil {
		logger.Error("adaptflow stopped with an error", "command", cmd, "err", err)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// healthcheck asks a server's /healthz, for container health checks (the
// image has no curl).
func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("adaptflow healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/healthz", "health endpoint to ask")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(*url)
	if err != nil {
		fmt.Fprintln(stderr, "adaptflow healthcheck:", err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintln(stderr, "adaptflow healthcheck:", res.Status)
		return 1
	}
	return 0
}
