package metrics

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// stateCollector emits the instance's state, read at scrape time: in-flight
// requests, the phase (as a number and as a state set), the configuration's
// load time and size, and the build and instance information.
type stateCollector struct {
	opts Options

	inFlight, phase, phaseState, configLoaded, configAPIs, build, instance *prometheus.Desc

	buildLabels    []string
	instanceLabels []string
}

func newStateCollector(opts Options) *stateCollector {
	version, revision := mainVersion()
	if opts.Version != "" {
		version = opts.Version
	}
	fq := func(name string) string { return prometheus.BuildFQName(Namespace, "", name) }
	return &stateCollector{
		opts: opts,
		inFlight: prometheus.NewDesc(fq("requests_in_flight"),
			"Requests being served on the traffic listener.", nil, nil),
		phase: prometheus.NewDesc(fq("phase"),
			"The instance's phase as a number: 0 starting, 1 serving, 2 draining, 3 closing, 4 stopped.", nil, nil),
		phaseState: prometheus.NewDesc(fq("phase_state"),
			"1 for the phase the instance is in, 0 for the others.", []string{"phase"}, nil),
		configLoaded: prometheus.NewDesc(fq("config_last_load_timestamp_seconds"),
			"When the current configuration was loaded (Unix time).", nil, nil),
		configAPIs: prometheus.NewDesc(fq("config_apis"),
			"APIs in the current configuration.", nil, nil),
		build: prometheus.NewDesc(fq("build_info"),
			"Always 1; the labels say which build is running.", []string{"version", "revision", "goversion"}, nil),
		instance: prometheus.NewDesc(fq("instance_info"),
			"Always 1; the labels name the instance and its group.", []string{"group_id", "instance_id", "group_name", "instance_name"}, nil),
		buildLabels:    []string{version, revision, runtime.Version()},
		instanceLabels: []string{opts.GroupID, opts.InstanceID, opts.GroupName, opts.InstanceName},
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inFlight, c.phase, c.phaseState, c.configLoaded, c.configAPIs, c.build, c.instance} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.opts
	if o.InFlight != nil {
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(o.InFlight()))
	}
	if o.Phase != nil {
		p := o.Phase()
		ch <- prometheus.MustNewConstMetric(c.phase, prometheus.GaugeValue, float64(p))
		for i, name := range o.PhaseNames {
			v := 0.0
			if i == p {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.phaseState, prometheus.GaugeValue, v, name)
		}
	}
	if o.ConfigLoadedAt != nil {
		if t := o.ConfigLoadedAt(); !t.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.configLoaded, prometheus.GaugeValue, float64(t.UnixNano())/1e9)
		}
	}
	if o.ConfigAPIs != nil {
		ch <- prometheus.MustNewConstMetric(c.configAPIs, prometheus.GaugeValue, float64(o.ConfigAPIs()))
	}
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, c.buildLabels...)
	ch <- prometheus.MustNewConstMetric(c.instance, prometheus.GaugeValue, 1, c.instanceLabels...)
}
