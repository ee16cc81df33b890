package metrics

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NodeInstance is what a node manager's metrics say of one instance of its
// host, read at scrape time from the supervisor.
type NodeInstance struct {
	GroupID, InstanceID, GroupName, InstanceName string
	Status                                       string // running, stopped, starting, stopping, failed, unknown
	Phase                                        string // the drain phase it reports ("serving", ...); "" when not answering
	Restarts                                     int    // restarts by the node manager since it started
	// LastExitCode is how it last ended: its exit status, or 128 + the
	// signal that killed it; HasLastExit is false when unknown.
	LastExitCode int
	HasLastExit  bool
	// InService is nil when not running; else whether it is in its load
	// balancer's pool.
	InService *bool
}

// NodeManagerOptions configure a node manager's metrics.
type NodeManagerOptions struct {
	HostID, NodeManagerID string
	Admin                 bool
	Version               string // "" takes the main module's version
	// Instances lists the host's instances at scrape time.
	Instances func() []NodeInstance
	// Backups, when not nil, gives the scheduled backups' counts at scrape
	// time (nil: no schedule, no backup metrics).
	Backups func() BackupStats
}

// BackupStats are the scheduled backups of a host.
type BackupStats struct {
	Succeeded, Failed int64
	LastSuccess       time.Time // zero: none yet
}

// NodeManager is the metrics of a node manager: gatehouse_nodemanager_*
// (docs/metrics.md) with a registry of its own, and the Go runtime and
// process collectors. Safe for concurrent use.
type NodeManager struct {
	handler http.Handler
}

// NewNodeManager makes the metrics of a node manager.
func NewNodeManager(opts NodeManagerOptions) *NodeManager {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newNodeCollector(opts),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &NodeManager{handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})}
}

// ServeHTTP serves the metrics in the Prometheus text format.
func (m *NodeManager) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

type nodeCollector struct {
	opts                                               NodeManagerOptions
	build, up, status, phase, restarts, lastExit, inSv *prometheus.Desc
	backups, lastBackup                                *prometheus.Desc
	buildLabels                                        []string
}

var nodeInstanceLabels = []string{"group_id", "instance_id", "group_name", "instance_name"}

func newNodeCollector(opts NodeManagerOptions) *nodeCollector {
	version, revision := mainVersion()
	if opts.Version != "" {
		version = opts.Version
	}
	admin := "false"
	if opts.Admin {
		admin = "true"
	}
	fq := func(name string) string { return prometheus.BuildFQName(Namespace, "nodemanager", name) }
	with := func(l ...string) []string { return append(append([]string{}, nodeInstanceLabels...), l...) }
	return &nodeCollector{
		opts: opts,
		build: prometheus.NewDesc(fq("build_info"), "Always 1; the labels say which build the node manager runs and which it is.",
			[]string{"version", "revision", "goversion", "host_id", "node_manager_id", "admin"}, nil),
		up: prometheus.NewDesc(fq("instance_up"), "1 when the instance runs (status running), else 0.", nodeInstanceLabels, nil),
		status: prometheus.NewDesc(fq("instance_status"), "1 for the instance's status as the node manager sees it (running, stopped, starting, stopping, failed, unknown).",
			with("status"), nil),
		phase: prometheus.NewDesc(fq("instance_phase"), "1 for the drain phase the running instance reports (starting, serving, draining, closing, stopped); absent when it does not answer.",
			with("phase"), nil),
		restarts:    prometheus.NewDesc(fq("instance_restarts_total"), "Restarts of the instance by the node manager since the node manager started.", nodeInstanceLabels, nil),
		lastExit:    prometheus.NewDesc(fq("instance_last_exit_code"), "How the instance last ended: its exit status, or 128 + the signal that killed it; absent when unknown.", nodeInstanceLabels, nil),
		inSv:        prometheus.NewDesc(fq("instance_in_service"), "1 when the running instance is in its load balancer's pool, 0 when taken out; absent when not running.", nodeInstanceLabels, nil),
		buildLabels: []string{version, revision, runtime.Version(), opts.HostID, opts.NodeManagerID, admin},
		backups:     prometheus.NewDesc(fq("backups_total"), "Scheduled backups run by this node manager (nodemanager.yaml backup.schedule), by result: succeeded (written and verified) or failed (logged at error).", []string{"result"}, nil),
		lastBackup:  prometheus.NewDesc(fq("backup_last_success_timestamp_seconds"), "When the last scheduled backup that succeeded began (Unix time); absent before the first.", nil, nil),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.build, c.up, c.status, c.phase, c.restarts, c.lastExit, c.inSv, c.backups, c.lastBackup} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, c.buildLabels...)
	if c.opts.Backups != nil {
		b := c.opts.Backups()
		ch <- prometheus.MustNewConstMetric(c.backups, prometheus.CounterValue, float64(b.Succeeded), "succeeded")
		ch <- prometheus.MustNewConstMetric(c.backups, prometheus.CounterValue, float64(b.Failed), "failed")
		if !b.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastBackup, prometheus.GaugeValue, float64(b.LastSuccess.UnixNano())/1e9)
		}
	}
	if c.opts.Instances == nil {
		return
	}
	for _, in := range c.opts.Instances() {
		l := []string{in.GroupID, in.InstanceID, in.GroupName, in.InstanceName}
		up := 0.0
		if in.Status == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, l...)
		ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, 1, append(l, in.Status)...)
		if in.Phase != "" {
			ch <- prometheus.MustNewConstMetric(c.phase, prometheus.GaugeValue, 1, append(l, in.Phase)...)
		}
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(in.Restarts), l...)
		if in.HasLastExit {
			ch <- prometheus.MustNewConstMetric(c.lastExit, prometheus.GaugeValue, float64(in.LastExitCode), l...)
		}
		if in.InService != nil {
			v := 0.0
			if *in.InService {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.inSv, prometheus.GaugeValue, v, l...)
		}
	}
}
