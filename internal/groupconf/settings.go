// Package groupconf is the configuration of a gateway instance, in layers:
// built-in defaults, the group configuration (groups/<group-id>/conf/group.yaml,
// shared by every instance of the group), the instance settings
// (groups/<group-id>/<instance-id>/conf/instance.yaml) and properties given on
// the command line (startinstance -Dkey=value), later layers winning.
//
// Every layer uses the same keys (docs/configuration.md lists them all, from
// Keys). An unknown key is an error naming the file, the line and the keys
// that are accepted there. The result of Load is a *Config: plain data,
// validated, never modified afterwards, so that an instance can hold it as one
// immutable value and swap it atomically.
package groupconf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// Settings is the whole configuration of one instance. Field tags: yaml is
// the key, doc the one-line documentation, layer the file where the key
// usually lives ("group" or "instance"; any layer may set any key).
type Settings struct {
	Traffic      Traffic      `yaml:"traffic" doc:"The traffic listener (API requests)." layer:"instance"`
	Management   Listener     `yaml:"management" doc:"The instance management listener (status, health); loopback only." layer:"instance"`
	Sample       Sample       `yaml:"sample" doc:"The sample back-end service served by the instance on a listener of its own." layer:"instance"`
	Profiling    Profiling    `yaml:"profiling" doc:"Go's profiles (net/http/pprof) on the management listener, for finding where the time goes (docs/performance.md)." layer:"instance"`
	ZeroDowntime ZeroDowntime `yaml:"zeroDowntime" doc:"Zero-downtime shutdown and deployment." layer:"group"`
	Startup      Startup      `yaml:"startup" doc:"Start-up behaviour." layer:"instance"`
	Log          Log          `yaml:"log" doc:"The instance log (logs/instance.log)." layer:"group"`
	AccessLog    AccessLog    `yaml:"accessLog" doc:"The access log (logs/access.log), one line per request." layer:"group"`
	Backends     []Backend    `yaml:"backends" doc:"Back-end services that APIs forward to." layer:"group"`
	RemoteHosts  []RemoteHost `yaml:"remoteHosts" doc:"Remote Host Settings: how to reach a back-end host name (addresses instead of DNS, priorities, load balancing, timeouts, limits, TLS, watchdog)." layer:"group"`
	APIs         []API        `yaml:"apis" doc:"APIs: which requests go to which back end." layer:"group"`
	NodeManager  NodeManager  `yaml:"nodeManager" doc:"How the node manager of the instance's host supervises it (docs/nodemanager.md)." layer:"group"`
	KPS          KPS          `yaml:"kps" doc:"The group's Key Property Store: client applications, API keys and custom collections (docs/kps.md)." layer:"group"`
	OAuth        OAuth        `yaml:"oauth" doc:"The group's OAuth 2.0 authorization server, on the traffic port (docs/oauth.md)." layer:"group"`
	Cluster      Cluster      `yaml:"cluster" doc:"The group's cluster bus: an embedded NATS server routed to the group's other instances over mutual TLS (docs/cluster.md)." layer:"instance"`
	Caches       []Cache      `yaml:"caches" json:",omitempty" doc:"Named caches, local to each instance or replicated across the group, for the responseCache, cacheLookup and cacheStore policies (docs/cache.md)." layer:"group"`
}

// Cluster is the instance's side of the group's bus (internal/cluster).
type Cluster struct {
	Enabled    bool     `yaml:"enabled" doc:"Join the group's bus when the group has other instances (the node manager names them, or peers lists them); false: never start it."`
	Address    string   `yaml:"address" doc:"IP address of the route listener that the group's other instances dial; empty means every interface."`
	Port       int      `yaml:"port" doc:"TCP port of the route listener; 0 means the management port + 10000 (- 10000 when that is above 65535): the port the node managers tell the other instances."`
	Advertise  string   `yaml:"advertise" doc:"host:port the other instances are told to dial to reach this one (behind address translation); empty: the route listener's."`
	ClientPort int      `yaml:"clientPort" doc:"TCP port on 127.0.0.1 of the bus's client listener (NATS needs one for routes; the instance connects in-process, anyone else needs a token made at each start); 0 means any free port."`
	Peers      []string `yaml:"peers" doc:"Route listeners (host:port) of other instances of the group, dialled besides those the node manager gives: a manual list."`
}

// ClusterPortOffset is added to the management port when cluster.port is
// 0: the route port the node managers assume for an instance.
const ClusterPortOffset = 10000

// DefaultRoutePort is the route port of an instance whose cluster.port is
// 0: its management port + ClusterPortOffset, or - ClusterPortOffset when
// that is above 65535. Node managers use it for the instances of other
// hosts, whose settings they cannot read.
func DefaultRoutePort(managementPort int) int {
	if p := managementPort + ClusterPortOffset; p <= 65535 {
		return p
	}
	return managementPort - ClusterPortOffset
}

// RoutePort is the route listener's port: cluster.port, or
// DefaultRoutePort of the management port.
func (s Settings) RoutePort() int {
	if s.Cluster.Port != 0 {
		return s.Cluster.Port
	}
	return DefaultRoutePort(s.Management.Port)
}

// OAuth is the group's authorization server (internal/oauth's Config, with
// the configuration's own types; the instance converts it).
type OAuth struct {
	Enabled               bool     `yaml:"enabled" doc:"Serve the authorization server: the token, introspection, revocation, JWKS and authorization endpoints under pathPrefix, and the metadata at /.well-known/oauth-authorization-server."`
	Issuer                string   `yaml:"issuer" doc:"The issuer identifier (RFC 8414): the https URL clients reach the gateway at, without path query or fragment beyond the gateway's; iss of JWT access tokens. Required when enabled."`
	PathPrefix            string   `yaml:"pathPrefix" doc:"Where the endpoints are: <prefix>/token, /introspect, /revoke, /jwks and /authorize. Default /oauth."`
	AccessTokenFormat     string   `yaml:"accessTokenFormat" doc:"opaque (random, stored as a keyed hash, checked against the store) or jwt (RFC 9068, signed with the group's key, groups/<group-id>/conf/oauth/keys)."`
	SigningAlgorithm      string   `yaml:"signingAlgorithm" doc:"The JWT signing algorithm of the group's keys: ES256, ES384, EdDSA or RS256."`
	AccessTokenLifetime   Duration `yaml:"accessTokenLifetime" doc:"Lifetime of an access token (1m to 24h)."`
	RefreshTokenLifetime  Duration `yaml:"refreshTokenLifetime" doc:"Lifetime of a refresh token; each use rotates it (1h to 8760h)."`
	CodeLifetime          Duration `yaml:"codeLifetime" doc:"Lifetime of an authorization code (10s to 10m)."`
	Scopes                []string `yaml:"scopes" doc:"The scopes this server knows; a request for another is refused with invalid_scope."`
	Audience              string   `yaml:"audience" doc:"aud of JWT access tokens; empty: the issuer."`
	ClientAssertionMaxAge Duration `yaml:"clientAssertionMaxAge" doc:"Longest lifetime accepted for a private_key_jwt client assertion (10s to 1h)."`
}

// KPS is where the group's Key Property Store lives.
type KPS struct {
	Backend  string      `yaml:"backend" doc:"sqlite: an embedded store, groups/<group-id>/conf/kps/kps.db, shared by the group's instances on one host; postgres: one PostgreSQL database for a group whose instances are on several hosts."`
	Postgres KPSPostgres `yaml:"postgres" doc:"The PostgreSQL database (backend postgres)."`
	Cache    KPSCache    `yaml:"cache" doc:"The instance's cache of look-ups on the request path."`
	Tables   []KPSTable  `yaml:"tables" doc:"Custom tables of the group's store, defined (or extended) when a process opens it: read by lookup policies, written through the management API (docs/kps.md)."`
}

// KPSTable is a custom table of the group's KPS (kps.Table).
type KPSTable struct {
	Collection   string        `yaml:"collection" doc:"The collection it belongs to (a label)."`
	Name         string        `yaml:"name" doc:"Its name (a label)."`
	Alias        string        `yaml:"alias" doc:"Its alias: how policies, the API and kpsadmin name it (letters, digits, _ - .)."`
	Properties   []KPSProperty `yaml:"properties" doc:"Its typed properties."`
	PrimaryKey   string        `yaml:"primaryKey" doc:"The property that identifies a row (string, integer or long)."`
	SecondaryKey string        `yaml:"secondaryKey" doc:"Another unique property rows can be found by; empty: none."`
	Indexes      []string      `yaml:"indexes" doc:"Properties rows can be queried by."`
}

// KPSProperty is a property of a custom table.
type KPSProperty struct {
	Name      string `yaml:"name" doc:"Its name."`
	Type      string `yaml:"type" doc:"string, boolean, integer, long, double, list or map."`
	Generated bool   `yaml:"generated" doc:"A string filled with a random UUID when a row is inserted without it."`
	Encrypted bool   `yaml:"encrypted" doc:"A string kept sealed in the store with the group's passphrase, when the group has one (never a key or an index; kpsadmin reencrypt after a passphrase change)."`
}

// KPSPostgres is the PostgreSQL database of a group's KPS.
type KPSPostgres struct {
	Host         string `yaml:"host" doc:"Host name or address, or a unix socket directory (starting with /)."`
	Port         int    `yaml:"port" doc:"Port; 0: 5432."`
	Database     string `yaml:"database" doc:"Database name."`
	User         string `yaml:"user" doc:"User name."`
	PasswordFile string `yaml:"passwordFile" doc:"File holding the password (its first line), absolute or relative to the install directory; empty: no password."`
	SSLMode      string `yaml:"sslMode" doc:"disable, require, verify-ca or verify-full (libpq's meanings); empty: prefer over TCP."`
	SSLRootCert  string `yaml:"sslRootCert" doc:"PEM file of the CAs that verify the server (verify-ca, verify-full)."`
	Schema       string `yaml:"schema" doc:"Schema of Gatehouse's tables; empty: public."`
}

// KPSCache is the look-up cache of an instance.
type KPSCache struct {
	TTL         Duration `yaml:"ttl" doc:"How long a row found is used without asking the store: a change made elsewhere (a key disabled) is seen within this (0.1s to 10m)."`
	NegativeTTL Duration `yaml:"negativeTTL" doc:"How long a row not found is remembered (0.1s to 10m)."`
	MaxBytes    int64    `yaml:"maxBytes" doc:"Memory the cache may hold, in bytes (64 KiB to 1 GiB); the least recently used rows go first."`
}

// NodeManager is how a node manager supervises the group's instances.
type NodeManager struct {
	RestartOnFailure  bool     `yaml:"restartOnFailure" doc:"Restart an instance that ended without being asked to stop (killed, crashed, a listener failed). A stop by startinstance -k, the node manager or a signal is never undone."`
	RestartBackoff    Duration `yaml:"restartBackoff" doc:"Delay before restarting a failed instance; it doubles with each failure in a row, up to restartBackoffMax, and starts again from this once the instance stayed up 2 minutes."`
	RestartBackoffMax Duration `yaml:"restartBackoffMax" doc:"Longest delay between restarts."`
}

// Checksum is a SHA-256 (hex) of the effective settings: two instances, or
// one instance at two times, with the same checksum run the same
// configuration.
func (s Settings) Checksum() string {
	data, err := json.Marshal(s)
	if err != nil { // plain data: cannot happen
		panic("groupconf: encoding settings: " + err.Error())
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Listener is an HTTP listener.
type Listener struct {
	Address           string   `yaml:"address" doc:"IP address to listen on; empty means every interface."`
	Port              int      `yaml:"port" doc:"TCP port."`
	ReadHeaderTimeout Duration `yaml:"readHeaderTimeout" doc:"Longest time a client may take to send the request headers."`
	ReadTimeout       Duration `yaml:"readTimeout" doc:"Longest time to read a whole request, body included; 0 means no limit (long uploads stream)."`
	WriteTimeout      Duration `yaml:"writeTimeout" doc:"Longest time to write a response; 0 means no limit (streams and long polls)."`
	IdleTimeout       Duration `yaml:"idleTimeout" doc:"How long an idle keep-alive connection is kept open."`
	MaxHeaderBytes    int      `yaml:"maxHeaderBytes" doc:"Largest request line and headers accepted, in bytes."`
}

// Traffic is the traffic listener: HTTP/1.1, and HTTP/2 when TLS is on.
type Traffic struct {
	Address           string   `yaml:"address" doc:"IP address to listen on; empty means every interface."`
	Port              int      `yaml:"port" doc:"TCP port."`
	ReadHeaderTimeout Duration `yaml:"readHeaderTimeout" doc:"Longest time a client may take to send a request line and headers, from its first byte (slow-loris guard)."`
	ReadTimeout       Duration `yaml:"readTimeout" doc:"Longest time to read a whole request, body included; 0 means no limit (long uploads stream)."`
	BodyIdleTimeout   Duration `yaml:"bodyIdleTimeout" doc:"Longest wait for the next bytes of a request body (slow-body guard)."`
	WriteTimeout      Duration `yaml:"writeTimeout" doc:"Longest time to write a response; 0 means no limit (streams and long polls)."`
	IdleTimeout       Duration `yaml:"idleTimeout" doc:"How long an idle keep-alive connection is kept open."`
	MaxHeaderBytes    int      `yaml:"maxHeaderBytes" doc:"Largest request line and headers accepted, in bytes (431 above; 414 for a request line over 8 KiB)."`
	MaxHeaderCount    int      `yaml:"maxHeaderCount" doc:"Most header fields accepted in a request (431 above)."`
	TLS               TLS      `yaml:"tls" doc:"TLS on the traffic listener."`
	HTTP2             bool     `yaml:"http2" doc:"Offer HTTP/2 (ALPN h2) when TLS is on. Cleartext HTTP/2 (h2c) is not offered."`
	HTTP2Engine       string   `yaml:"http2Engine" doc:"Which server speaks HTTP/2: gatehouse (the gateway's own engine, docs/h2.md) or go (Go's net/http HTTP/2 server through a bridge)."`
	TrustedProxies    []string `yaml:"trustedProxies" doc:"Networks (CIDR, or single addresses) of the load balancers in front: only from these are Forwarded, X-Forwarded-For, the client-certificate header and PROXY protocol believed."`
	ClientCertHeader  string   `yaml:"clientCertHeader" doc:"Header in which a trusted proxy passes the client's certificate (e.g. X-SSL-Client-Cert); empty for none."`
	ProxyProtocol     bool     `yaml:"proxyProtocol" doc:"Accept a PROXY protocol v1 or v2 header at the start of connections from trustedProxies (from others it is refused)."`
}

// RemoteHost is the Remote Host Settings of one back-end host name: every
// back end whose URL names this host (and port, when given) uses them.
type RemoteHost struct {
	Host                    string              `yaml:"host" doc:"Host name (or IP) as written in the back ends' url."`
	Port                    int                 `yaml:"port" doc:"Port as in the back ends' url; 0 applies to every port of the host."`
	Addresses               []RemoteHostAddress `yaml:"addresses" doc:"Addresses to use instead of DNS, in priority groups; empty uses DNS."`
	LoadBalancing           string              `yaml:"loadBalancing" doc:"Within a priority group: roundRobin, or responseTime (weighted by a decaying average response time: faster addresses get more, not all, of the traffic)."`
	ResponseTimeHalfLife    Duration            `yaml:"responseTimeHalfLife" doc:"With responseTime: the average response time of an address halves its weight of history every this long."`
	FailedAddressSkip       Duration            `yaml:"failedAddressSkip" doc:"An address that failed to connect or answer is skipped for this long. When every address is skipped, requests still go to them, the least recently failed first."`
	FailedAddressThreshold  int                 `yaml:"failedAddressThreshold" doc:"Failures of an address within failedAddressSkip that make it skipped (1: the first failure does, as nginx's max_fails=1). Faults of the client's side never count."`
	HTTP10                  bool                `yaml:"http10" doc:"Speak HTTP/1.0 (one request per connection) instead of HTTP/1.1 with keep-alive."`
	ConnectTimeout          Duration            `yaml:"connectTimeout" doc:"Longest time to connect (and to finish the TLS handshake) to one address."`
	ActiveTimeout           Duration            `yaml:"activeTimeout" doc:"Longest wait for the next bytes from the back end once the request is sent (read timeout); 504 before the response starts."`
	TransactionTimeout      Duration            `yaml:"transactionTimeout" doc:"Longest time for a whole exchange with the back end, response body included."`
	MaxSentBytes            int64               `yaml:"maxSentBytes" doc:"Largest request body sent to this host (413 before sending); 0 means no limit."`
	MaxReceivedBytes        int64               `yaml:"maxReceivedBytes" doc:"Largest response body accepted from this host; over it the response is cut (the connection aborted) and logged; 0 means no limit."`
	IdleTimeout             Duration            `yaml:"idleTimeout" doc:"How long an idle keep-alive connection to an address is kept."`
	MaxIdleConns            int                 `yaml:"maxIdleConns" doc:"Idle keep-alive connections kept per address (the session cache)."`
	MaxConnections          int                 `yaml:"maxConnections" doc:"Most connections open to one address at once; 0 means no limit."`
	ConnectionWait          Duration            `yaml:"connectionWait" doc:"With maxConnections reached, how long a request waits for a connection before 503."`
	InputBufferSize         int                 `yaml:"inputBufferSize" doc:"Buffer for reading from the back end, in bytes."`
	OutputBufferSize        int                 `yaml:"outputBufferSize" doc:"Buffer for writing to the back end, in bytes."`
	HostHeader              string              `yaml:"hostHeader" doc:"Host header sent; empty sends the host (and port) of the back end's url."`
	SNI                     string              `yaml:"sni" doc:"TLS server name sent; empty sends the url's host name (none for an IP)."`
	VerifyServerCertificate bool                `yaml:"verifyServerCertificate" doc:"Verify the back end's TLS certificate and host name."`
	CAFile                  string              `yaml:"caFile" doc:"PEM bundle of CAs to verify the back end with, instead of the system's; relative to the install directory; under the group's directory or nodemanager.yaml allowedConfigDirs."`
	TLSSessionCache         int                 `yaml:"tlsSessionCache" doc:"TLS sessions kept for resumption; 0 turns resumption off."`
	DNSCacheTTL             Duration            `yaml:"dnsCacheTTL" doc:"How long a DNS answer is used, when addresses are not given."`
	Watchdog                Watchdog            `yaml:"watchdog" doc:"Active health check of each address."`
}

// UnmarshalYAML starts an entry from RemoteHostDefaults, so that keys left
// out keep their defaults.
func (r *RemoteHost) UnmarshalYAML(n *yaml.Node) error {
	type plain RemoteHost
	*r = RemoteHostDefaults()
	return n.Decode((*plain)(r))
}

// RemoteHostAddress is one address of a remote host.
type RemoteHostAddress struct {
	Address  string `yaml:"address" doc:"IP address."`
	Port     int    `yaml:"port" doc:"Port; 0 uses the port of the back end's url."`
	Priority int    `yaml:"priority" doc:"Priority group: 1 is used first; a higher number only when every address of the lower groups is down."`
}

// Watchdog is the active check of a remote host's addresses.
type Watchdog struct {
	Enabled            bool     `yaml:"enabled" doc:"Check every address periodically; an address failing unhealthyThreshold checks in a row leaves the rotation until it passes healthyThreshold in a row."`
	Method             string   `yaml:"method" doc:"Method of the check request."`
	Path               string   `yaml:"path" doc:"Request target of the check (* for OPTIONS *)."`
	Interval           Duration `yaml:"interval" doc:"Time between checks of one address."`
	Timeout            Duration `yaml:"timeout" doc:"Longest time for one check."`
	HealthyThreshold   int      `yaml:"healthyThreshold" doc:"Passed checks in a row that bring an address back."`
	UnhealthyThreshold int      `yaml:"unhealthyThreshold" doc:"Failed checks in a row that take an address out. A check passes on 2xx to 4xx."`
}

// RemoteHostDefaults fills what a remoteHosts entry leaves out (the vendor's
// defaults, except HTTP/1.1 with keep-alive).
func RemoteHostDefaults() RemoteHost {
	return RemoteHost{
		LoadBalancing: "roundRobin", ResponseTimeHalfLife: Seconds(10), FailedAddressSkip: Seconds(30), FailedAddressThreshold: 1,
		ConnectTimeout: Seconds(30), ActiveTimeout: Seconds(30), TransactionTimeout: Seconds(240),
		MaxSentBytes: 10 << 20, MaxReceivedBytes: 10 << 20,
		IdleTimeout: Seconds(15), MaxIdleConns: 64, ConnectionWait: Seconds(5),
		InputBufferSize: 8192, OutputBufferSize: 8192,
		VerifyServerCertificate: true, TLSSessionCache: 32, DNSCacheTTL: Seconds(300),
		Watchdog: Watchdog{Method: "OPTIONS", Path: "*", Interval: Seconds(10), Timeout: Seconds(5), HealthyThreshold: 2, UnhealthyThreshold: 3},
	}
}

// TLS is a certificate and key for a listener.
type TLS struct {
	CertFile string `yaml:"certFile" doc:"PEM certificate chain; a relative path is taken from the install directory; it must lie under the group's directory groups/<group-id>/ or a directory of allowedConfigDirs in nodemanager.yaml. Setting it turns TLS on."`
	KeyFile  string `yaml:"keyFile" doc:"PEM private key of the certificate; a relative path is taken from the install directory; the same rule as certFile (the domain's and node managers' keys are never usable)."`
	// SessionTickets: TLS session resumption (docs/instance.md#tls-session-resumption).
	SessionTickets SessionTickets `yaml:"sessionTickets" doc:"TLS session resumption by tickets."`
}

// SessionTickets configures TLS session tickets (tlsticket).
type SessionTickets struct {
	Enabled  bool     `yaml:"enabled" doc:"Issue session tickets, so that a returning client resumes its TLS session without a full handshake."`
	Shared   bool     `yaml:"shared" doc:"Keep the ticket keys in the group's key property store, so that a ticket issued by one instance resumes on every instance of the group (PostgreSQL: every host; the embedded store: the instances of one host); false keeps them in each process."`
	Rotation Duration `yaml:"rotation" doc:"How often the ticket key changes (1m to 24h); a ticket resumes for one to two rotations, and a key is erased three rotations after it was made."`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Listener returns the settings common to every listener.
func (t Traffic) Listener() Listener {
	return Listener{Address: t.Address, Port: t.Port, ReadHeaderTimeout: t.ReadHeaderTimeout, ReadTimeout: t.ReadTimeout,
		WriteTimeout: t.WriteTimeout, IdleTimeout: t.IdleTimeout, MaxHeaderBytes: t.MaxHeaderBytes}
}

// Sample configures the built-in sample back end.
type Sample struct {
	Enabled bool   `yaml:"enabled" doc:"Serve the sample back end (echo, delay, status)."`
	Address string `yaml:"address" doc:"IP address of the sample back-end listener."`
	Port    int    `yaml:"port" doc:"TCP port of the sample back-end listener."`
}

// Profiling serves the runtime's profiles on the management listener.
type Profiling struct {
	Enabled bool `yaml:"enabled" doc:"Serve /debug/pprof/ on the management listener (GET; with the domain's mutual TLS, only to this host's node manager's certificate). Off by default."`
}

// ZeroDowntime holds the zero-downtime settings.
type ZeroDowntime struct {
	Shutdown   ZDTShutdown   `yaml:"shutdown" doc:"Zero-downtime shutdown."`
	Deployment ZDTDeployment `yaml:"deployment" doc:"Zero-downtime deployment (used by the deployment issue)."`
}

// ZDTShutdown configures shutdown.
type ZDTShutdown struct {
	Enabled      bool     `yaml:"enabled" doc:"On shutdown, answer 503 on /healthchecklb and keep serving for the delay before closing the listener."`
	Delay        Duration `yaml:"delay" doc:"How long to keep serving after /healthchecklb turned 503 (seconds, or a duration such as 1500ms). No upper cap."`
	DrainTimeout Duration `yaml:"drainTimeout" doc:"After the listener closed, how long in-flight requests may take to finish before their connections are closed."`
}

// ZDTDeployment configures rolling deployments.
type ZDTDeployment struct {
	Enabled     bool     `yaml:"enabled" doc:"Deploy to the group's instances one at a time, taking each out of the load balancer first."`
	DelayBefore Duration `yaml:"delayBefore" doc:"Wait between /healthchecklb turning 503 and the deployment."`
	DelayAfter  Duration `yaml:"delayAfter" doc:"Wait between /healthchecklb turning 200 again and the next instance."`
}

// Startup configures start-up.
type Startup struct {
	Timeout Duration `yaml:"timeout" doc:"How long startinstance -d waits for the instance to report itself ready."`
}

// Log configures the instance log.
type Log struct {
	Level      string `yaml:"level" doc:"Lowest level written: debug, info, warn or error."`
	MaxSizeMB  int    `yaml:"maxSizeMB" doc:"Rotate a log file when it reaches this size (MiB). Applies to the access log too."`
	MaxBackups int    `yaml:"maxBackups" doc:"Rotated files kept per log."`
	MaxAgeDays int    `yaml:"maxAgeDays" doc:"Rotated files older than this are removed; 0 keeps them."`
	Compress   bool   `yaml:"compress" doc:"Gzip rotated files."`
}

// AccessLog configures the access log.
type AccessLog struct {
	Enabled bool `yaml:"enabled" doc:"Write one line per request to logs/access.log."`
}

// Backend is a back-end service.
type Backend struct {
	Name           string   `yaml:"name" doc:"Name that APIs refer to."`
	URL            string   `yaml:"url" doc:"Base URL (http or https); its path is prefixed to the forwarded path."`
	Sample         bool     `yaml:"sample" doc:"Use this instance's sample back end instead of a URL (http://sample.address:sample.port)."`
	ConnectTimeout Duration `yaml:"connectTimeout" doc:"Longest time to establish a connection."`
	Timeout        Duration `yaml:"timeout" doc:"Longest time to wait for the response headers once the request is sent (504 after it)."`
	MaxIdleConns   int      `yaml:"maxIdleConns" doc:"Idle keep-alive connections kept to this back end."`
	IdleTimeout    Duration `yaml:"idleTimeout" doc:"How long an idle connection to the back end is kept."`
}

// API maps requests to a back end.
type API struct {
	Name         string   `yaml:"name" doc:"Name, used in logs."`
	Host         string   `yaml:"host" doc:"Match only requests for this host name (without port); empty matches any."`
	Path         string   `yaml:"path" doc:"Match this path: literal segments and {name} segments that match one segment each (/orders/{id}); see docs/routing.md."`
	PathPrefix   string   `yaml:"pathPrefix" doc:"Match this path prefix (segment-aligned: /a matches /a and /a/b, not /ab)."`
	PathRegex    string   `yaml:"pathRegex" doc:"Match this regular expression (Go RE2 syntax, anchored at both ends) against the decoded path; give one of path, pathPrefix or pathRegex."`
	Methods      []string `yaml:"methods" doc:"Match only these methods; empty matches any."`
	Backend      string   `yaml:"backend" doc:"Name of the back end to forward to."`
	StripPrefix  bool     `yaml:"stripPrefix" doc:"Remove pathPrefix from the path before forwarding."`
	MaxBodyBytes int64    `yaml:"maxBodyBytes" doc:"Largest request body accepted on this API, in bytes (413 above); 0 means no limit. Default 10 MiB."`
	Policies     []Policy `yaml:"policies" doc:"Policies applied in order to the requests that matched this API, each a mapping with one key, its type (docs/policies.md)."`
}

// DefaultMaxBodyBytes is the body limit of an API that does not set one.
const DefaultMaxBodyBytes = 10 << 20

// Defaults returns the built-in defaults.
func Defaults() Settings {
	return Settings{
		Traffic: Traffic{
			Address: "", Port: 8080,
			ReadHeaderTimeout: Seconds(10), BodyIdleTimeout: Seconds(30), IdleTimeout: Seconds(60),
			MaxHeaderBytes: 32 << 10, MaxHeaderCount: 100, HTTP2: true, HTTP2Engine: "gatehouse",
			TLS: TLS{SessionTickets: SessionTickets{Enabled: true, Shared: true, Rotation: Seconds(3600)}},
		},
		Management: Listener{
			Address: "127.0.0.1", Port: 8085,
			ReadHeaderTimeout: Seconds(10), ReadTimeout: Seconds(30), WriteTimeout: Seconds(30), IdleTimeout: Seconds(60),
			MaxHeaderBytes: 16 << 10,
		},
		Sample: Sample{Enabled: false, Address: "127.0.0.1", Port: 8081},
		ZeroDowntime: ZeroDowntime{
			Shutdown:   ZDTShutdown{Enabled: false, Delay: Seconds(10), DrainTimeout: Seconds(30)},
			Deployment: ZDTDeployment{Enabled: false, DelayBefore: Seconds(10), DelayAfter: Seconds(10)},
		},
		Startup:   Startup{Timeout: Seconds(60)},
		Log:       Log{Level: "info", MaxSizeMB: 50, MaxBackups: 10, MaxAgeDays: 30},
		AccessLog: AccessLog{Enabled: true},
		KPS:       KPS{Backend: "sqlite", Cache: KPSCache{TTL: Duration(5 * time.Second), NegativeTTL: Duration(time.Second), MaxBytes: 16 << 20}},
		OAuth: OAuth{PathPrefix: "/oauth", AccessTokenFormat: "opaque", SigningAlgorithm: "ES256", AccessTokenLifetime: Duration(time.Hour),
			RefreshTokenLifetime: Duration(720 * time.Hour), CodeLifetime: Duration(time.Minute), ClientAssertionMaxAge: Duration(5 * time.Minute)},
		NodeManager: NodeManager{RestartOnFailure: false, RestartBackoff: Seconds(1), RestartBackoffMax: Seconds(60)},
		Cluster:     Cluster{Enabled: true},
	}
}

// BackendDefaults fills what a backend entry leaves out.
func BackendDefaults() Backend {
	return Backend{ConnectTimeout: Seconds(30), Timeout: Seconds(30), MaxIdleConns: 64, IdleTimeout: Seconds(15)}
}

// Duration is a time.Duration written in YAML either as a number of seconds
// (10, 2.5) or as a Go duration string ("1500ms", "2m").
type Duration time.Duration

// Seconds returns a Duration of s seconds.
func Seconds(s float64) Duration { return Duration(s * float64(time.Second)) }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string {
	if d == 0 {
		return "0"
	}
	if time.Duration(d)%time.Second == 0 {
		return strconv.FormatInt(int64(time.Duration(d)/time.Second), 10)
	}
	return time.Duration(d).String()
}

// ParseDuration reads seconds ("10", "2.5") or a duration ("1500ms").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("duration %q is negative", s)
		}
		return Seconds(f), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (write seconds such as 10 or 2.5, or a duration such as 1500ms)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(d), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration, got a %s", n.Line, kindName(n.Kind))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
