// Package remotehost is how the gateway reaches its back ends: the Remote
// Host Settings of each back-end host name (groupconf.RemoteHost) turned
// into addresses in priority groups, each with its own connection pool (an
// h1.Upstream), load balancing within a group (round robin, or weighted by
// a decaying average response time), failover and retries, and an optional
// watchdog per address.
//
// A Registry, owned by the instance, builds one Set per configuration
// (Build) and makes it current (Activate): the per-address state (up/down,
// average response time, counters, last error) is kept across
// configurations for every address whose remote host, IP, port and scheme
// are unchanged, watchdogs are started for new addresses and stopped for
// addresses that left the configuration. Host.Forward is the request path:
// it allocates nothing when the first address answers.
//
// Effective settings of a back end: RemoteHostDefaults, overlaid by the
// matching remoteHosts entry (Config.RemoteHostFor), overlaid by the back
// end's own connectTimeout, timeout (the active timeout), maxIdleConns and
// idleTimeout when the back end sets them explicitly. See
// docs/remotehosts.md.
package remotehost

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/groupconf"
	"github.com/gatehouse-gw/gatehouse/internal/h1"
)

// MaxAddresses is the most addresses a remote host uses (the rest of a
// longer DNS answer is ignored).
const MaxAddresses = 64

// Options configure a Registry.
type Options struct {
	Dir      string       // the install directory (caFile is relative to it)
	Logger   *slog.Logger // nil discards
	Resolver Resolver     // looks up host names without addresses; nil: net.DefaultResolver
}

// Resolver looks up the IP addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Registry builds the remote hosts of each configuration and keeps the
// per-address state across them. It is safe for concurrent use.
type Registry struct {
	dir      string
	log      *slog.Logger
	resolver Resolver

	mu        sync.Mutex // guards the fields below
	states    map[addrKey]*addrState
	current   *Set
	watchdogs map[addrKey]*watchdog
	closed    bool
}

// NewRegistry returns an empty Registry.
func NewRegistry(opts Options) *Registry {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var res Resolver = net.DefaultResolver
	if opts.Resolver != nil {
		res = opts.Resolver
	}
	return &Registry{dir: opts.Dir, log: log, resolver: res, states: map[addrKey]*addrState{}, watchdogs: map[addrKey]*watchdog{}}
}

// addrKey identifies an address across configurations.
type addrKey struct {
	host   string // the back end's host name, lower case
	ip     netip.Addr
	port   int
	scheme string
}

// Set is the remote hosts of one configuration: one Host per back end.
type Set struct {
	hosts []*Host
}

// Host returns the Host of the configuration's i-th back end.
func (s *Set) Host(i int) *Host { return s.hosts[i] }

// CloseIdle closes the idle connections of every address (busy ones close
// when their exchange ends).
func (s *Set) CloseIdle() {
	for _, h := range s.hosts {
		h.CloseIdle()
	}
}

// CloseIdle closes the idle connections of h's addresses.
func (h *Host) CloseIdle() {
	if g := h.groups.Load(); g != nil {
		for _, a := range g.all {
			a.up.CloseIdle()
		}
	}
}

// Standalone builds the Host of a lone back end b outside any
// configuration and registry: the defaults, overlaid by b's connectTimeout,
// timeout, maxIdleConns and idleTimeout when they are not zero.
func Standalone(b groupconf.Backend, sample groupconf.Sample, opts Options) (*Host, error) {
	r := NewRegistry(opts)
	cfg := &groupconf.Config{Settings: groupconf.Settings{Backends: []groupconf.Backend{b}, Sample: sample}}
	st := groupconf.RemoteHostDefaults()
	if b.ConnectTimeout > 0 {
		st.ConnectTimeout = b.ConnectTimeout
	}
	if b.Timeout > 0 {
		st.ActiveTimeout = b.Timeout
	}
	if b.MaxIdleConns > 0 {
		st.MaxIdleConns = b.MaxIdleConns
	}
	if b.IdleTimeout > 0 {
		st.IdleTimeout = b.IdleTimeout
	}
	return r.buildHost(cfg, 0, st)
}

// Host is the remote host of one back end: its addresses and settings. It
// is safe for concurrent use.
type Host struct {
	// Name is the remote host as in the configuration: "host:port" (or
	// "host" for an entry for every port), "sample" for the sample back end.
	Name     string
	Backend  string // the back end's name
	Settings groupconf.RemoteHost
	// HostHeader is the Host field to send: hostHeader, else the url's host.
	HostHeader []byte

	reg      *Registry
	scheme   string
	host     string // the url's host name, lower case
	port     int    // the url's port
	tlsConf  *tls.Config
	weighted bool
	halfLife float64 // seconds
	skip     int64   // failedAddressSkip, ns
	// threshold: failures within skip that make an address skipped
	threshold int32

	groups     atomic.Pointer[groupList]
	dnsMu      sync.Mutex // one resolution at a time
	refreshing atomic.Bool
	inFallback atomic.Bool // every address skipped after failures (see pick)
}

// groupList is a Host's addresses, in priority groups (lowest first).
type groupList struct {
	all     []*Address
	groups  []*group
	expires int64 // mono time after which DNS answers are refreshed; 0 = never
}

type group struct {
	priority int
	addrs    []*Address
	rr       atomic.Uint64
}

// Address is one address of a Host with its connection pool.
type Address struct {
	Priority int
	up       *h1.Upstream
	st       *addrState
	idx      int // in groupList.all: the bit in a request's tried set
}

// Addr returns "ip:port".
func (a *Address) Addr() string { return a.up.Addr }

// Effective returns the settings of cfg.Backends[i] (see the package
// comment for the precedence).
func Effective(cfg *groupconf.Config, i int) groupconf.RemoteHost {
	b := cfg.Backends[i]
	r := groupconf.RemoteHostDefaults()
	if j := cfg.RemoteHostFor(b); j >= 0 {
		r = cfg.RemoteHosts[j]
	}
	set := func(k string) bool {
		return cfg.Origin(fmt.Sprintf("backends[%d].%s", i, k)).File != "default"
	}
	if set("connectTimeout") {
		r.ConnectTimeout = b.ConnectTimeout
	}
	if set("timeout") {
		r.ActiveTimeout = b.Timeout
	}
	if set("maxIdleConns") {
		r.MaxIdleConns = b.MaxIdleConns
	}
	if set("idleTimeout") {
		r.IdleTimeout = b.IdleTimeout
	}
	return r
}

// Build makes the remote hosts of cfg, one per back end, reusing the state
// of addresses the current configuration already has. Nothing changes
// until Activate.
func (r *Registry) Build(cfg *groupconf.Config) (*Set, error) {
	s := &Set{hosts: make([]*Host, len(cfg.Backends))}
	for i, b := range cfg.Backends {
		h, err := r.buildHost(cfg, i, Effective(cfg, i))
		if err != nil {
			return nil, fmt.Errorf("back end %q: %w", b.Name, err)
		}
		s.hosts[i] = h
	}
	return s, nil
}

func (r *Registry) buildHost(cfg *groupconf.Config, i int, st groupconf.RemoteHost) (*Host, error) {
	b := cfg.Backends[i]
	h := &Host{Backend: b.Name, Settings: st, reg: r, weighted: st.LoadBalancing == "responseTime",
		halfLife: st.ResponseTimeHalfLife.D().Seconds(), skip: int64(st.FailedAddressSkip.D()), threshold: int32(st.FailedAddressThreshold)}
	var urlHost string
	if b.Sample {
		addr := cfg.Sample.Address
		if a, err := netip.ParseAddr(addr); addr == "" || (err == nil && a.IsUnspecified()) {
			addr = "127.0.0.1"
		}
		h.Name, h.scheme, h.host, h.port = "sample", "http", addr, cfg.Sample.Port
		// A sample back end matches no remoteHosts entry: st is the
		// defaults (no watchdog) and the back end's own keys.
		st.Addresses = []groupconf.RemoteHostAddress{{Address: addr, Port: cfg.Sample.Port}}
		// The local sample service takes what the API accepts
		// (apis[].maxBodyBytes): no byte limits of its own.
		st.MaxSentBytes, st.MaxReceivedBytes = 0, 0
		h.Settings = st
		urlHost = net.JoinHostPort(addr, strconv.Itoa(cfg.Sample.Port))
	} else {
		u, err := url.Parse(b.URL)
		if err != nil {
			return nil, fmt.Errorf("parsing url: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("url %q is not an http:// or https:// URL with a host", b.URL)
		}
		h.scheme = u.Scheme
		h.host, h.port = groupconf.BackendHostPort(b)
		urlHost = u.Host
		h.Name = net.JoinHostPort(h.host, strconv.Itoa(h.port))
		if j := cfg.RemoteHostFor(b); j >= 0 && cfg.RemoteHosts[j].Port == 0 {
			h.Name = strings.ToLower(cfg.RemoteHosts[j].Host)
		}
	}
	h.HostHeader = []byte(urlHost)
	if st.HostHeader != "" {
		h.HostHeader = []byte(st.HostHeader)
	}
	if h.scheme == "https" {
		tc, err := r.tlsConfig(h, st)
		if err != nil {
			return nil, err
		}
		h.tlsConf = tc
	}
	if len(st.Addresses) > 0 {
		list := make([]addrSpec, 0, len(st.Addresses))
		for _, a := range st.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				return nil, fmt.Errorf("address %q: %w", a.Address, err)
			}
			port := a.Port
			if port == 0 {
				port = h.port
			}
			list = append(list, addrSpec{ip.Unmap(), port, max(a.Priority, 1)})
		}
		h.groups.Store(h.makeGroups(list, 0))
	} else if ip, err := netip.ParseAddr(h.host); err == nil {
		h.groups.Store(h.makeGroups([]addrSpec{{ip.Unmap(), h.port, 1}}, 0))
	}
	return h, nil
}

type addrSpec struct {
	ip       netip.Addr
	port     int
	priority int
}

// makeGroups builds the addresses of list, reusing the registry's state.
func (h *Host) makeGroups(list []addrSpec, expires int64) *groupList {
	list = list[:min(len(list), MaxAddresses)]
	sort.SliceStable(list, func(i, j int) bool { return list[i].priority < list[j].priority })
	g := &groupList{expires: expires}
	for _, a := range list {
		st := h.reg.state(addrKey{h.host, a.ip, a.port, h.scheme})
		ad := &Address{Priority: a.priority, st: st, idx: len(g.all), up: h.upstream(st)}
		g.all = append(g.all, ad)
		if n := len(g.groups); n == 0 || g.groups[n-1].priority != a.priority {
			g.groups = append(g.groups, &group{priority: a.priority})
		}
		last := g.groups[len(g.groups)-1]
		last.addrs = append(last.addrs, ad)
	}
	return g
}

func (h *Host) upstream(st *addrState) *h1.Upstream {
	s := h.Settings
	return &h1.Upstream{
		Addr:               st.addr,
		OnUnsolicited:      st.unsolicitedClose,
		TLS:                h.tlsConf,
		DialTimeout:        s.ConnectTimeout.D(),
		ActiveTimeout:      s.ActiveTimeout.D(),
		TransactionTimeout: s.TransactionTimeout.D(),
		IdleTimeout:        s.IdleTimeout.D(),
		MaxIdle:            s.MaxIdleConns,
		MaxConns:           s.MaxConnections,
		ConnWait:           s.ConnectionWait.D(),
		MaxSentBytes:       s.MaxSentBytes,
		MaxReceivedBytes:   s.MaxReceivedBytes,
		ReadBufferSize:     s.InputBufferSize,
		WriteBufferSize:    s.OutputBufferSize,
		HTTP10:             s.HTTP10,
	}
}

// state returns the registry's state of k, made on first use.
func (r *Registry) state(k addrKey) *addrState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[k]
	if st == nil {
		st = &addrState{key: k, addr: netip.AddrPortFrom(k.ip, uint16(k.port)).String()}
		r.states[k] = st
	}
	return st
}

func (r *Registry) tlsConfig(h *Host, s groupconf.RemoteHost) (*tls.Config, error) {
	tc := &tls.Config{
		ServerName:         h.host,
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"http/1.1"},
		InsecureSkipVerify: !s.VerifyServerCertificate,
	}
	if s.SNI != "" {
		tc.ServerName = s.SNI
	}
	if s.TLSSessionCache > 0 {
		tc.ClientSessionCache = tls.NewLRUClientSessionCache(s.TLSSessionCache)
	}
	if s.CAFile != "" {
		f := s.CAFile
		if !filepath.IsAbs(f) {
			f = filepath.Join(r.dir, f)
		}
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s: no PEM certificate found", f)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Activate makes s the current set: watchdogs start for its addresses that
// have none, stop (and are waited for) for addresses it no longer has or
// whose watchdog settings changed, and the state of addresses s does not
// have is forgotten.
func (r *Registry) Activate(s *Set) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.current = s
	r.reconcileLocked()
}

// reconcileLocked brings the watchdogs and states in line with r.current.
func (r *Registry) reconcileLocked() {
	want := map[addrKey]wdSpec{}
	keep := map[addrKey]bool{}
	dnsHosts := map[string]bool{}
	for _, h := range r.current.hosts {
		g := h.groups.Load()
		if len(h.Settings.Addresses) == 0 {
			dnsHosts[h.host] = true
		}
		if g == nil {
			continue
		}
		for _, a := range g.all {
			keep[a.st.key] = true
			if h.Settings.Watchdog.Enabled {
				if _, ok := want[a.st.key]; !ok {
					want[a.st.key] = h.wdSpec(a)
				}
			}
		}
	}
	for k, wd := range r.watchdogs {
		if spec, ok := want[k]; !ok || spec.cmp != wd.spec.cmp {
			wd.stop()
			delete(r.watchdogs, k)
			if !ok {
				wd.st.watchdogDown.Store(false)
			}
		}
	}
	for k, spec := range want {
		if r.watchdogs[k] == nil {
			r.watchdogs[k] = r.startWatchdog(spec)
		}
	}
	for k := range r.states {
		if !keep[k] && !dnsHosts[k.host] {
			delete(r.states, k)
		}
	}
}

// Close stops every watchdog and waits for them. The Sets stay usable.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for k, wd := range r.watchdogs {
		wd.stop()
		delete(r.watchdogs, k)
	}
}

// resolve returns h's addresses, resolving the host name with DNS when the
// configuration gives none (the answer is cached for dnsCacheTTL; an expired
// one is refreshed in the background while it is still used).
func (h *Host) resolve(ctx context.Context, now int64) (*groupList, error) {
	g := h.groups.Load()
	if g == nil {
		return h.firstLookup(ctx)
	}
	if g.expires != 0 && now > g.expires && h.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer h.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), h.Settings.ConnectTimeout.D())
			defer cancel()
			if _, err := h.lookup(ctx); err != nil {
				h.reg.log.Warn("refreshing dns answer; keeping the previous one", "remoteHost", h.Name, "error", err.Error())
			}
		}()
	}
	return g, nil
}

// firstLookup resolves h's host name for the first time: one lookup at a
// time; a request that waited for another's lookup takes its answer.
func (h *Host) firstLookup(ctx context.Context) (*groupList, error) {
	h.dnsMu.Lock()
	defer h.dnsMu.Unlock()
	if g := h.groups.Load(); g != nil {
		return g, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.Settings.ConnectTimeout.D())
	defer cancel()
	return h.lookup(ctx)
}

func (h *Host) lookup(ctx context.Context) (*groupList, error) {
	ips, err := h.reg.resolver.LookupNetIP(ctx, "ip", h.host)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", h.host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolving %s: no address", h.host)
	}
	list := make([]addrSpec, len(ips))
	for i, ip := range ips {
		list[i] = addrSpec{ip.Unmap(), h.port, 1}
	}
	old := h.groups.Load()
	g := h.makeGroups(list, mono()+int64(h.Settings.DNSCacheTTL.D()))
	if old != nil {
		// Keep the pools of addresses that stay.
		byAddr := map[string]*h1.Upstream{}
		for _, a := range old.all {
			byAddr[a.up.Addr] = a.up
		}
		for _, a := range g.all {
			if up := byAddr[a.up.Addr]; up != nil {
				a.up = up
				delete(byAddr, a.up.Addr)
			}
		}
		for _, up := range byAddr {
			up.CloseIdle()
		}
	}
	h.groups.Store(g)
	r := h.reg
	r.mu.Lock()
	if r.current != nil && !r.closed {
		r.reconcileLocked()
	}
	r.mu.Unlock()
	return g, nil
}

var monoBase = time.Now()

// mono is a monotonic clock in nanoseconds.
func mono() int64 { return int64(time.Since(monoBase)) }

// ErrNoAddress is the cause of a request that found no eligible address
// (every address failed recently or was taken out by the watchdog): 503.
var ErrNoAddress = errors.New("no address of the remote host is up")
