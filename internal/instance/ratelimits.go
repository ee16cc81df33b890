package instance

import (
	"github.com/gatehouse-gw/gatehouse/internal/cache/ratelimit"
)

// The instance's rate-limit counters (docs/rate-limits.md): one
// ratelimit.Service made with the instance and kept across configurations
// (a limiter whose settings stay keeps its counts through a swap). Until
// the cluster bus is attached (startBus), and in a group of one, it counts
// locally with the whole limit.

// newRateLimits makes the service and registers its metrics.
func (i *Instance) newRateLimits() {
	i.rateLimits = ratelimit.New(ratelimit.Options{InstanceID: i.opts.InstanceID, Logger: i.lgWith("ratelimit")})
	i.metrics.Registry().MustRegister(i.rateLimits.Collector())
}

// rateLimiters are the limiters of rt's rateLimit policies.
func rateLimiters(rt *runtime) []*ratelimit.Limiter {
	var out []*ratelimit.Limiter
	for _, c := range rt.chains {
		for _, p := range c {
			if rp, ok := p.(*ratelimit.Policy); ok {
				out = append(out, rp.Limiter())
			}
		}
	}
	return out
}
