// Package temporalserver runs a complete Temporal server inside adaptflow's
// process, persisted to one SQLite file, the way the official CLI's
// `temporal server start-dev` does: the frontend on a chosen address, the
// other services on free local ports, namespaces created idempotently.
package temporalserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"

	"github.com/adaptflow/adaptflow/internal/ports"
	"github.com/adaptflow/adaptflow/store/sqlite"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

// Options configure the embedded server.
type Options struct {
	// DatabaseFile is the SQLite file of the server's state; empty keeps it
	// in memory (tests).
	DatabaseFile string
	// FrontendAddress is where the gRPC frontend listens (127.0.0.1:7233).
	FrontendAddress string
	// Namespaces are created at start if missing.
	Namespaces []string
	Logger     *slog.Logger
	// LogLevel filters the server's own logs (default warn).
	LogLevel slog.Level
	// ClaimMapper and Authorizer, when set, check every call to the
	// frontend the way a secured cluster does (an API key in the
	// authorization header, say); by default every call is allowed.
	ClaimMapper authorization.ClaimMapper
	Authorizer  authorization.Authorizer
}

// DefaultOptions match the flag defaults of `adaptflow dev`.
func DefaultOptions() Options {
	return Options{FrontendAddress: "127.0.0.1:7233", Namespaces: []string{"default"}, LogLevel: slog.LevelWarn}
}

func (o *Options) validate() error {
	if _, _, err := net.SplitHostPort(o.FrontendAddress); err != nil {
		return fmt.Errorf("temporal frontend address %q: %w", o.FrontendAddress, err)
	}
	if len(o.Namespaces) == 0 {
		return errors.New("temporal: at least one namespace is required")
	}
	return nil
}

// Server is a running embedded Temporal server.
type Server struct {
	srv   temporal.Server
	addr  string
	level *slog.LevelVar
}

// Start starts the server and returns once its frontend accepts calls.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, _ := net.SplitHostPort(opts.FrontendAddress)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("temporal frontend port %q: %w", portStr, err)
	}
	picked := port == 0
	if picked {
		if port, err = freePort(host); err != nil {
			return nil, err
		}
	}
	// Fail early and clearly when the port is taken (another Temporal dev
	// server, say) instead of deep inside the server's start.
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("temporal frontend %s:%d is not free (is another Temporal server running? choose another with --temporal-address): %w", host, port, err)
	}
	_ = l.Close()
	// The services' other ports are picked free just before the server
	// binds them; another process may bind one in between. Such a start
	// is tried again, with other ports. The server binds each service's
	// port as it builds it, and one that fails midway leaves those it
	// bound open, the frontend's among them: a frontend port of our
	// choosing is chosen again too; one the caller named stays taken, and
	// the next try fails on it.
	for attempt := 1; ; attempt++ {
		s, err := start(opts, host, port)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return s, err
		}
		opts.Logger.Warn("a port of the embedded Temporal server was taken as it started; trying again with others", "err", err)
		if picked {
			if port, err = freePort(host); err != nil {
				return nil, err
			}
		}
	}
}

// start builds and starts the server on its frontend port, with the other
// ports picked now.
func start(opts Options, host string, port int) (_ *Server, err error) {
	conf, err := buildConfig(opts, host, port)
	if err != nil {
		return nil, err
	}
	level := &slog.LevelVar{}
	level.Set(opts.LogLevel)
	lg := slogLogger{log: opts.Logger.With("component", "temporal"), level: level, starting: &atomic.Bool{}}
	lg.starting.Store(true)
	defer func() {
		lg.starting.Store(false)
		r := recover()
		if f, ok := r.(startFailure); ok {
			err = fmt.Errorf("temporal: start server: %s", f.msg) // a port taken: tried again
		} else if r != nil {
			panic(r)
		}
	}()
	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("temporal authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, lg)
	if err != nil {
		return nil, fmt.Errorf("temporal claim mapper: %w", err)
	}
	if opts.ClaimMapper != nil {
		claimMapper = opts.ClaimMapper
	}
	if opts.Authorizer != nil {
		authorizer = opts.Authorizer
	}
	hostOf := func(svc primitives.ServiceName) static.Hosts {
		return static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(conf.Services[string(svc)].RPC.GRPCPort)))
	}
	dyn := dynamicconfig.StaticClient{
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8096,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		dynamicconfig.FrontendRPS.Key():                                  10000,
		dynamicconfig.FrontendNamespaceReplicationInducingAPIsRPS.Key():  1000,
		// SQLite has one writer: a few visibility writers keep up, more
		// only queue on its lock in front of the executions' writes.
		dynamicconfig.VisibilityProcessorSchedulerWorkerCount.Key(): 2,
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: hostOf(primitives.FrontendService),
			primitives.MatchingService: hostOf(primitives.MatchingService),
			primitives.HistoryService:  hostOf(primitives.HistoryService),
			primitives.WorkerService:   hostOf(primitives.WorkerService),
		}),
		temporal.WithLogger(lg),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("temporal: build server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("temporal: start server: %w", err)
	}
	return &Server{srv: srv, addr: net.JoinHostPort(host, strconv.Itoa(port)), level: level}, nil
}

// Address is the frontend's host:port.
func (s *Server) Address() string { return s.addr }

// Stop stops the server. Its services warn about each other going away
// while they stop; those warnings are expected and silenced.
func (s *Server) Stop() error {
	s.level.Set(slog.LevelError)
	return s.srv.Stop()
}

func buildConfig(opts Options, host string, port int) (*config.Config, error) {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence.DefaultStore = "sqlite-default"
	conf.Persistence.VisibilityStore = "sqlite-default"
	conf.Persistence.NumHistoryShards = 1
	// An executions' database without a visibility one beside it is from
	// before they were split: it keeps visibility.
	shared := false
	if opts.DatabaseFile != "" {
		_, err := os.Stat(opts.DatabaseFile)
		_, verr := os.Stat(VisibilityFile(opts.DatabaseFile))
		shared = err == nil && errors.Is(verr, os.ErrNotExist)
	}
	sqlConf, err := sqlConfig(opts)
	if err != nil {
		return nil, err
	}
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite-default": {SQL: sqlConf}}
	// Visibility (the list of workflows) gets a database of its own, so
	// its heavily indexed writes do not hold up the executions' writer. A
	// data directory made before keeps visibility where it has it.
	if !shared {
		visConf, err := visibilityConfig(opts)
		if err != nil {
			return nil, err
		}
		conf.Persistence.VisibilityStore = "sqlite-visibility"
		conf.Persistence.DataStores["sqlite-visibility"] = config.DataStore{SQL: visConf}
	}
	// The frontend's HTTP port, then the other services' gRPC ports.
	picked, err := servicePorts(host, port, 4)
	if err != nil {
		return nil, err
	}
	httpPort := picked[0]
	const clusterName = "active"
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             net.JoinHostPort(host, strconv.Itoa(port)),
				HTTPAddress:            net.JoinHostPort(host, strconv.Itoa(httpPort)),
				ClusterID:              "adaptflow-dev",
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	conf.Services = map[string]config.Service{}
	for i, name := range []string{"frontend", "history", "matching", "worker"} {
		var svc config.Service
		svc.RPC.BindOnIP = host
		if name == "frontend" {
			svc.RPC.GRPCPort = port
			svc.RPC.HTTPPort = httpPort
		} else {
			svc.RPC.GRPCPort = picked[i]
		}
		conf.Services[name] = svc
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = net.JoinHostPort(host, strconv.Itoa(port))
	return &conf, nil
}

func sqlConfig(opts Options) (*config.SQL, error) {
	var conf config.SQL
	var err error
	if opts.DatabaseFile == "" {
		conf, err = memorySQL("adaptflow-")
	} else {
		conf = fileSQL(opts.DatabaseFile)
		err = setUpIfMissing(&conf, opts.DatabaseFile, "schema", nil)
	}
	if err != nil {
		return nil, err
	}
	nss := make([]*sqliteschema.NamespaceConfig, 0, len(opts.Namespaces))
	for _, ns := range opts.Namespaces {
		nc, err := sqliteschema.NewNamespaceConfig("active", ns, false, nil)
		if err != nil {
			return nil, fmt.Errorf("temporal: namespace %s: %w", ns, err)
		}
		nss = append(nss, nc)
	}
	if err := sqliteschema.CreateNamespaces(&conf, nss...); err != nil {
		return nil, fmt.Errorf("temporal: create namespaces: %w", err)
	}
	return &conf, nil
}

// VisibilityFile is where a data directory's visibility database lives
// beside the executions' one.
func VisibilityFile(databaseFile string) string {
	return strings.TrimSuffix(databaseFile, ".db") + "-visibility.db"
}

// visibilityConfig is the visibility store's own database, in memory when
// the executions' one is.
func visibilityConfig(opts Options) (*config.SQL, error) {
	if opts.DatabaseFile == "" {
		conf, err := memorySQL("adaptflow-visibility-")
		return &conf, err
	}
	file := VisibilityFile(opts.DatabaseFile)
	conf := fileSQL(file)
	if err := setUpIfMissing(&conf, file, "visibility schema", func() error { return trimVisibilityIndexes(file) }); err != nil {
		return nil, err
	}
	return &conf, nil
}

// memorySQL is an in-memory database, named prefix and a number unique
// enough (a free port's).
func memorySQL(prefix string) (config.SQL, error) {
	n, err := freePort("127.0.0.1")
	if err != nil {
		return config.SQL{}, err
	}
	return config.SQL{PluginName: sqliteplugin.PluginName, DatabaseName: prefix + strconv.Itoa(n),
		ConnectAttributes: map[string]string{"mode": "memory", "cache": "shared"}}, nil
}

// fileSQL is a database file.
//
// WAL with synchronous=normal survives a crash of the process (the dev
// server's promise) and is several times faster than the default rollback
// journal; a power loss may lose the last commits.
//
// One connection: SQLite has one writer, and writers on several
// connections wait for its lock in SQLite's busy handler, which sleeps for
// milliseconds at a time; queued on one connection they go in turn at once
// (about twice the throughput, a third of the start latency under load).
func fileSQL(file string) config.SQL {
	return config.SQL{
		// The plugin opens "file:" + DatabaseName: a URI's path.
		PluginName: sqliteplugin.PluginName, DatabaseName: sqlite.URIPath(file), MaxConns: 1, MaxIdleConns: 1,
		ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "normal", "busy_timeout": "10000"},
	}
}

// setUpIfMissing creates the schema of conf's database, file, and runs
// after (when not nil), unless the file exists. A half-made file is
// removed: it must not look like a database.
func setUpIfMissing(conf *config.SQL, file, what string, after func() error) error {
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("temporal: data directory: %w", err)
	}
	err := sqliteschema.SetupSchema(conf)
	if err != nil {
		err = fmt.Errorf("temporal: set up %s: %w", what, err)
	} else if after != nil {
		err = after()
	}
	if err != nil {
		_ = os.Remove(file)
	}
	return err
}

// trimVisibilityIndexes drops the indexes of the custom search attribute
// columns (Bool01..Keyword10): adaptflow registers no custom search
// attributes, and each index costs every visibility write an update. A
// query on such an attribute still works, by scanning.
func trimVisibilityIndexes(file string) error {
	db, err := sql.Open("sqlite", "file:"+sqlite.URIPath(file))
	if err != nil {
		return fmt.Errorf("temporal: visibility database: %w", err)
	}
	defer db.Close()
	var drops []string
	for kind, n := range map[string]int{"bool": 3, "datetime": 3, "double": 3, "int": 3, "keyword": 10} {
		for i := 1; i <= n; i++ {
			drops = append(drops, fmt.Sprintf("DROP INDEX IF EXISTS by_%s_%02d", kind, i))
		}
	}
	for _, q := range drops {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("temporal: visibility database: %s: %w", q, err)
		}
	}
	return nil
}

func freePort(host string) (int, error) {
	p, err := ports.Free(host)
	if err != nil {
		return 0, fmt.Errorf("temporal: %w", err)
	}
	return p, nil
}

// servicePort picks the ports of the services other than the frontend's
// gRPC (a test takes one first).
var servicePort = freePort

// servicePorts picks n ports for the services, none of them the
// frontend's nor one another's. Each pick is free when made, but the
// frontend's port is not bound yet and the ports picked before are not
// either: a pick can repeat one, and the server's second bind of it
// would fail (and leave the first bound, so a try again with the
// frontend port a user named would fail on it as well).
func servicePorts(host string, frontend, n int) ([]int, error) {
	used := map[int]bool{frontend: true}
	picked := make([]int, 0, n)
	for tries := 0; len(picked) < n; tries++ {
		if tries == 64*n {
			return nil, fmt.Errorf("temporal: no %d free ports beside %d", n, frontend)
		}
		p, err := servicePort(host)
		if err != nil {
			return nil, err
		}
		if !used[p] {
			used[p] = true
			picked = append(picked, p)
		}
	}
	return picked, nil
}

// slogLogger adapts slog to the server's logger interface.
type slogLogger struct {
	log   *slog.Logger
	level *slog.LevelVar
	// starting, while set, makes Fatal panic with a startFailure (the
	// server's own Fatal exits; it goes on with a nil listener, say, and
	// panics further in): start recovers it as an error.
	starting *atomic.Bool
}

// startFailure is what the server called Fatal with while it started.
type startFailure struct{ msg string }

var _ log.Logger = slogLogger{}

func (s slogLogger) Debug(msg string, tags ...tag.Tag)  { s.emit(slog.LevelDebug, msg, tags) }
func (s slogLogger) Info(msg string, tags ...tag.Tag)   { s.emit(slog.LevelInfo, msg, tags) }
func (s slogLogger) Warn(msg string, tags ...tag.Tag)   { s.emit(slog.LevelWarn, msg, tags) }
func (s slogLogger) Error(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogLogger) DPanic(msg string, tags ...tag.Tag) { s.emit(slog.LevelError, msg, tags) }
func (s slogLogger) Panic(msg string, tags ...tag.Tag)  { s.emit(slog.LevelError, msg, tags) }
func (s slogLogger) Fatal(msg string, tags ...tag.Tag) {
	s.emit(slog.LevelError, msg, tags)
	if s.starting != nil && s.starting.Load() {
		for _, t := range tags {
			msg += fmt.Sprintf(" %s=%v", t.Key(), t.Value())
		}
		panic(startFailure{msg: msg})
	}
}

func (s slogLogger) emit(level slog.Level, msg string, tags []tag.Tag) {
	if level < s.level.Level() {
		return
	}
	attrs := make([]slog.Attr, len(tags))
	for i, t := range tags {
		attrs[i] = slog.Any(t.Key(), t.Value())
	}
	s.log.LogAttrs(context.Background(), level, msg, attrs...)
}
