package kps

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/secret"
)

// DefaultBackend is the backend used when Config.Backend is "".
const DefaultBackend = "sqlite"

// Config chooses and configures a backend. It is plain data: the group
// configuration fills it, Open reads it. Only the section of the chosen
// backend is used.
type Config struct {
	// Backend names a registered backend: "sqlite" (default) or "postgres".
	Backend  string         `json:"backend,omitempty"`
	SQLite   SQLiteConfig   `json:"sqlite,omitzero"`
	Postgres PostgresConfig `json:"postgres,omitzero"`
	// Logger receives the backend's few log lines (migrations, recoveries);
	// nil discards them.
	Logger *slog.Logger `json:"-"`
}

// SQLiteConfig configures the embedded backend.
type SQLiteConfig struct {
	// Path of the database file. An instance uses
	// groups/<group-id>/conf/kps/kps.db under the install directory
	// (sqlite.GroupPath). Its directory is created (0700) if missing.
	Path string `json:"path"`
	// BusyTimeout is how long a write waits for another process's write
	// to finish before failing with ErrUnavailable (default 5 s).
	BusyTimeout time.Duration `json:"busyTimeout,omitempty"`
}

// PostgresConfig configures the PostgreSQL backend.
type PostgresConfig struct {
	Host     string       `json:"host"` // a host name, an address, or a unix socket directory (starts with '/')
	Port     int          `json:"port,omitempty"`
	Database string       `json:"database"`
	User     string       `json:"user"`
	Password secret.Value `json:"-"` // never printed, never marshalled
	// SSLMode is libpq's: disable, allow, prefer, require, verify-ca,
	// verify-full (default "prefer" over TCP, "disable" on a unix socket).
	SSLMode string `json:"sslMode,omitempty"`
	// SSLRootCert is a PEM file of CAs that verify the server (verify-ca,
	// verify-full).
	SSLRootCert string `json:"sslRootCert,omitempty"`
	// Schema holds Gatehouse's tables (default "public").
	Schema string `json:"schema,omitempty"`
	// ConnectTimeout bounds a connection attempt (default 2 s): a server that
	// is down gives ErrUnavailable within it.
	ConnectTimeout time.Duration `json:"connectTimeout,omitempty"`
	// StatementTimeout is set as the server's statement_timeout, and also
	// bounds each operation whose context has no deadline (default 5 s).
	StatementTimeout time.Duration `json:"statementTimeout,omitempty"`
	// MaxConns bounds the connection pool (default 8).
	MaxConns int `json:"maxConns,omitempty"`
}

// Opener opens a store of one backend from a Config.
type Opener func(ctx context.Context, cfg Config) (Store, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Opener{}
)

// Register makes a backend available to Open under name. Backends call it
// from init; registering a name twice panics.
func Register(name string, open Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("kps: backend " + name + " registered twice")
	}
	registry[name] = open
}

// Backends returns the registered backends' names, sorted.
func Backends() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	return slices.Sorted(maps.Keys(registry))
}

// Open opens the store that cfg describes with its registered backend (the
// program imports the backend packages it offers: kps/sqlite, kps/postgres).
func Open(ctx context.Context, cfg Config) (Store, error) {
	name := cfg.Backend
	if name == "" {
		name = DefaultBackend
	}
	regMu.RLock()
	open, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, Invalid("backend %q: not available (have %v)", name, Backends())
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the %s key property store: %w", name, err)
	}
	return s, nil
}
