package supervisor_test

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/internal/instance"
	"github.com/gatehouse-gw/gatehouse/internal/supervisor"
)

// The node manager relays leases up to the instance's own limit.
func TestMaxLeaseAgrees(t *testing.T) {
	if supervisor.MaxLease != instance.MaxLease {
		t.Fatalf("supervisor.MaxLease %v, instance.MaxLease %v", supervisor.MaxLease, instance.MaxLease)
	}
}
