package groupconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/route/pattern"
)

var validMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true, "TRACE": true, "CONNECT": true}

func (c *Config) errAt(key, format string, args ...any) error {
	return &Error{Origin: c.Origin(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}

func (c *Config) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.checkListener("traffic", c.Traffic.Listener()))
	if c.Traffic.MaxHeaderCount < 1 {
		add(c.errAt("traffic.maxHeaderCount", "must be at least 1"))
	}
	switch c.Traffic.HTTP2Engine {
	case "gatehouse", "go":
	default:
		add(c.errAt("traffic.http2Engine", "%q is not an HTTP/2 engine; accepted: gatehouse, go", c.Traffic.HTTP2Engine))
	}
	if c.Traffic.TLS.Enabled() != (c.Traffic.TLS.KeyFile != "") {
		add(c.errAt("traffic.tls", "give both certFile and keyFile, or neither"))
	}
	if r := c.Traffic.TLS.SessionTickets.Rotation.D(); r < time.Minute || r > 24*time.Hour {
		add(c.errAt("traffic.tls.sessionTickets.rotation", "%s is out of range: from 1m to 24h", r))
	}
	add(c.checkListener("management", c.Management))
	if a, err := netip.ParseAddr(c.Management.Address); err != nil || !a.IsLoopback() {
		add(c.errAt("management.address", "%q is not a loopback address; the management listener is loopback only until it is protected by mutual TLS", c.Management.Address))
	}
	if c.Sample.Enabled {
		add(c.checkPort("sample.port", c.Sample.Port))
		add(c.checkAddr("sample.address", c.Sample.Address))
	}
	ports := []struct {
		key  string
		on   bool
		port int
	}{{"traffic.port", true, c.Traffic.Port}, {"management.port", true, c.Management.Port}, {"sample.port", c.Sample.Enabled, c.Sample.Port},
		{"cluster.port", c.Cluster.Enabled && c.Cluster.Port != 0, c.Cluster.Port}, {"cluster.clientPort", c.Cluster.Enabled && c.Cluster.ClientPort != 0, c.Cluster.ClientPort}}
	add(c.validateCluster())
	for i := range ports {
		for j := i + 1; j < len(ports); j++ {
			if ports[i].on && ports[j].on && ports[i].port == ports[j].port {
				add(c.errAt(ports[j].key, "port %d is also %s (%s)", ports[j].port, ports[i].key, c.Origin(ports[i].key)))
			}
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add(c.errAt("log.level", "%q is not a level; accepted: debug, info, warn, error", c.Log.Level))
	}
	if c.Log.MaxSizeMB < 1 {
		add(c.errAt("log.maxSizeMB", "must be at least 1"))
	}
	if c.Log.MaxBackups < 0 || c.Log.MaxAgeDays < 0 {
		add(c.errAt("log.maxBackups", "must not be negative"))
	}
	if c.Startup.Timeout <= 0 {
		add(c.errAt("startup.timeout", "must be more than 0"))
	}
	if c.NodeManager.RestartBackoff <= 0 {
		add(c.errAt("nodeManager.restartBackoff", "must be more than 0"))
	}
	if c.NodeManager.RestartBackoffMax < c.NodeManager.RestartBackoff {
		add(c.errAt("nodeManager.restartBackoffMax", "%s is less than nodeManager.restartBackoff (%s)", c.NodeManager.RestartBackoffMax, c.NodeManager.RestartBackoff))
	}
	backends := map[string]bool{}
	for i, b := range c.Backends {
		k := fmt.Sprintf("backends[%d]", i)
		switch {
		case b.Name == "":
			add(c.errAt(k, "a back end needs a name"))
		case backends[b.Name]:
			add(c.errAt(k+".name", "back end %q is defined twice", b.Name))
		}
		backends[b.Name] = true
		switch {
		case b.Sample && b.URL != "":
			add(c.errAt(k+".url", "give either url or sample: true, not both"))
		case b.Sample && !c.Sample.Enabled && !c.groupOnly:
			add(c.errAt(k+".sample", "back end %q uses the sample service, but sample.enabled is false for this instance", b.Name))
		case !b.Sample:
			u, err := url.Parse(b.URL)
			if b.URL == "" {
				add(c.errAt(k, "back end %q needs a url (or sample: true)", b.Name))
			} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				add(c.errAt(k+".url", "%q is not an http:// or https:// URL with a host (and no query, fragment or user info)", b.URL))
			}
		}
		if b.MaxIdleConns < 0 {
			add(c.errAt(k+".maxIdleConns", "must not be negative"))
		}
	}
	for i, p := range c.Traffic.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			add(c.errAt(fmt.Sprintf("traffic.trustedProxies[%d]", i), "%q is not a network (10.0.0.0/8) or an address (192.0.2.7)", p))
		}
	}
	if c.Traffic.ProxyProtocol && len(c.Traffic.TrustedProxies) == 0 {
		add(c.errAt("traffic.proxyProtocol", "PROXY protocol is accepted only from traffic.trustedProxies, and none are listed"))
	}
	if h := c.Traffic.ClientCertHeader; h != "" && !validToken(h) {
		add(c.errAt("traffic.clientCertHeader", "%q is not a header name", h))
	}
	add(c.validateRemoteHosts())
	c.validateKPS(add)
	c.validateOAuth(add)
	c.validateCaches(add)
	apis := map[string]bool{}
	var routes pattern.Seen
	for i, a := range c.APIs {
		k := fmt.Sprintf("apis[%d]", i)
		switch {
		case a.Name == "":
			add(c.errAt(k, "an API needs a name"))
		case apis[a.Name]:
			add(c.errAt(k+".name", "API %q is defined twice", a.Name))
		}
		apis[a.Name] = true
		var pat pattern.Pattern
		var perr error
		pkey := k
		switch {
		case btoi(a.Path != "")+btoi(a.PathPrefix != "")+btoi(a.PathRegex != "") != 1:
			add(c.errAt(k, "API %q needs exactly one of path, pathPrefix or pathRegex", a.Name))
		case a.Path != "":
			pkey = k + ".path"
			pat, perr = pattern.ParsePath(a.Path)
		case a.PathPrefix != "":
			pkey = k + ".pathPrefix"
			pat, perr = pattern.ParsePrefix(a.PathPrefix)
		default:
			pkey = k + ".pathRegex"
			pat, perr = pattern.ParseRegex(a.PathRegex)
		}
		if perr != nil {
			add(c.errAt(pkey, "%v", perr))
		} else if pkey != k {
			var de *pattern.DuplicateError
			if err := routes.Add(i, a.Host, &pat, a.RouteMethods()); errors.As(err, &de) {
				add(c.errAt(pkey, "API %q has the same host and path as API %q (%s), and both accept %s, so it would never be chosen for it; give them different methods, or remove one", a.Name, c.APIs[de.Earlier].Name, c.Origin(fmt.Sprintf("apis[%d]", de.Earlier)), de.Method))
			}
		}
		if a.MaxBodyBytes < 0 {
			add(c.errAt(k+".maxBodyBytes", "must not be negative (0 means no limit)"))
		}
		c.validatePolicies(i, a, add)
		if a.StripPrefix && a.PathPrefix == "" {
			add(c.errAt(k+".stripPrefix", "stripPrefix needs pathPrefix"))
		}
		for _, m := range a.Methods {
			if !validMethods[m] {
				add(c.errAt(k+".methods", "%q is not a method; accepted: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT (upper case)", m))
			}
		}
		if a.Host != "" && strings.ContainsAny(a.Host, ":/ ") {
			add(c.errAt(k+".host", "%q must be a host name without port", a.Host))
		}
		if !backends[a.Backend] {
			var names []string
			for _, b := range c.Backends {
				names = append(names, b.Name)
			}
			add(c.errAt(k+".backend", "API %q names back end %q, which is not defined; defined: %s", a.Name, a.Backend, strings.Join(names, ", ")))
		}
	}
	return errors.Join(errs...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// validateCluster checks the cluster section (the route port against the
// other listeners is checked with them).
func (c *Config) validateCluster() error {
	var errs []error
	cl := c.Cluster
	if cl.Port != 0 {
		errs = append(errs, c.checkPort("cluster.port", cl.Port))
	}
	if cl.ClientPort != 0 {
		errs = append(errs, c.checkPort("cluster.clientPort", cl.ClientPort))
	}
	errs = append(errs, c.checkAddr("cluster.address", cl.Address))
	if cl.Advertise != "" {
		if err := checkHostPort(cl.Advertise); err != nil {
			errs = append(errs, c.errAt("cluster.advertise", "%q: %v", cl.Advertise, err))
		}
	}
	for i, p := range cl.Peers {
		if err := checkHostPort(strings.TrimPrefix(p, "nats-route://")); err != nil {
			errs = append(errs, c.errAt("cluster.peers", "entry %d, %q: %v", i+1, p, err))
		}
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with a port from 1 to 65535.
func checkHostPort(s string) error {
	h, p, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return errors.New("want host:port")
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a TCP port (1-65535)", p)
	}
	return nil
}

func (c *Config) checkListener(name string, l Listener) error {
	var errs []error
	errs = append(errs, c.checkPort(name+".port", l.Port), c.checkAddr(name+".address", l.Address))
	if l.MaxHeaderBytes < 1024 {
		errs = append(errs, c.errAt(name+".maxHeaderBytes", "must be at least 1024"))
	}
	return errors.Join(errs...)
}

func (c *Config) checkPort(key string, p int) error {
	if p < 1 || p > 65535 {
		return c.errAt(key, "%d is not a TCP port (1-65535)", p)
	}
	return nil
}

func (c *Config) checkAddr(key, a string) error {
	if a == "" {
		return nil
	}
	if _, err := netip.ParseAddr(a); err != nil {
		return c.errAt(key, "%q is not an IP address (leave it empty for every interface)", a)
	}
	return nil
}

// ParsePrefix reads a trusted-proxy entry: a CIDR network or one address.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// BackendHostPort returns the host name and port a back end's url names (the
// sample back end gives "", 0).
func BackendHostPort(b Backend) (string, int) {
	if b.Sample {
		return "", 0
	}
	u, err := url.Parse(b.URL)
	if err != nil {
		return "", 0
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		fmt.Sscan(p, &port)
	}
	return strings.ToLower(u.Hostname()), port
}

// RemoteHostFor returns the index of the remoteHosts entry that applies to b
// (an entry with the same host and port wins over one for every port), or -1.
func (c *Config) RemoteHostFor(b Backend) int {
	host, port := BackendHostPort(b)
	if host == "" {
		return -1
	}
	best := -1
	for i, r := range c.RemoteHosts {
		if !strings.EqualFold(r.Host, host) {
			continue
		}
		if r.Port == port {
			return i
		}
		if r.Port == 0 {
			best = i
		}
	}
	return best
}

func (c *Config) validateRemoteHosts() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	type hp struct {
		h string
		p int
	}
	seen := map[hp]bool{}
	var reached []string
	for _, b := range c.Backends {
		if h, p := BackendHostPort(b); h != "" {
			reached = append(reached, fmt.Sprintf("%s:%d", h, p))
		}
	}
	for i, r := range c.RemoteHosts {
		k := fmt.Sprintf("remoteHosts[%d]", i)
		if r.Host == "" || strings.ContainsAny(r.Host, "/: ") {
			add(c.errAt(k+".host", "%q is not a host name (no scheme, port or path)", r.Host))
			continue
		}
		if r.Port < 0 || r.Port > 65535 {
			add(c.errAt(k+".port", "%d is not a port (0 for every port)", r.Port))
		}
		key := hp{strings.ToLower(r.Host), r.Port}
		if seen[key] {
			add(c.errAt(k+".host", "remote host %q (port %d) is defined twice", r.Host, r.Port))
		}
		seen[key] = true
		used := false
		for _, b := range c.Backends {
			if h, p := BackendHostPort(b); strings.EqualFold(h, r.Host) && (r.Port == 0 || r.Port == p) {
				used = true
			}
		}
		if !used {
			add(c.errAt(k+".host", "remote host %q (port %d) is not used by any back end; the back ends reach: %s", r.Host, r.Port, strings.Join(reached, ", ")))
		}
		switch r.LoadBalancing {
		case "roundRobin", "responseTime":
		default:
			add(c.errAt(k+".loadBalancing", "%q is not a load-balancing method; accepted: roundRobin, responseTime", r.LoadBalancing))
		}
		for j, a := range r.Addresses {
			ak := fmt.Sprintf("%s.addresses[%d]", k, j)
			if _, err := netip.ParseAddr(a.Address); err != nil {
				add(c.errAt(ak+".address", "%q is not an IP address", a.Address))
			}
			if a.Port < 0 || a.Port > 65535 {
				add(c.errAt(ak+".port", "%d is not a port (0 for the url's port)", a.Port))
			}
			if a.Priority < 0 {
				add(c.errAt(ak+".priority", "must be 1 or more (0 means 1)"))
			}
		}
		for _, d := range []struct {
			name string
			v    Duration
		}{{"connectTimeout", r.ConnectTimeout}, {"activeTimeout", r.ActiveTimeout}, {"transactionTimeout", r.TransactionTimeout}} {
			if d.v <= 0 {
				add(c.errAt(k+"."+d.name, "must be more than 0"))
			}
		}
		if r.MaxSentBytes < 0 || r.MaxReceivedBytes < 0 || r.MaxIdleConns < 0 || r.MaxConnections < 0 || r.TLSSessionCache < 0 {
			add(c.errAt(k, "limits must not be negative (0 means none)"))
		}
		if r.InputBufferSize < 512 || r.OutputBufferSize < 512 || r.InputBufferSize > 1<<20 || r.OutputBufferSize > 1<<20 {
			add(c.errAt(k+".inputBufferSize", "buffer sizes must be between 512 bytes and 1 MiB"))
		}
		if r.ResponseTimeHalfLife <= 0 {
			add(c.errAt(k+".responseTimeHalfLife", "must be more than 0"))
		}
		if r.FailedAddressThreshold < 1 || r.FailedAddressThreshold > 1000 {
			add(c.errAt(k+".failedAddressThreshold", "must be between 1 and 1000"))
		}
		if w := r.Watchdog; w.Enabled {
			if !validToken(w.Method) {
				add(c.errAt(k+".watchdog.method", "%q is not a method", w.Method))
			}
			if w.Path != "*" && !strings.HasPrefix(w.Path, "/") {
				add(c.errAt(k+".watchdog.path", "%q must be * or start with /", w.Path))
			}
			if w.Interval <= 0 || w.Timeout <= 0 {
				add(c.errAt(k+".watchdog.interval", "interval and timeout must be more than 0"))
			}
			if w.HealthyThreshold < 1 || w.UnhealthyThreshold < 1 {
				add(c.errAt(k+".watchdog.healthyThreshold", "thresholds must be at least 1"))
			}
		}
	}
	return errors.Join(errs...)
}
