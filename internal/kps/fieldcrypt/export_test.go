package fieldcrypt

import "github.com/gatehouse-gw/gatehouse/internal/secret"

// The tests derive many keys: the cheapest derivation the bounds allow.
func init() {
	newKDF = func() secret.KDF {
		k := secret.NewKDF()
		k.Time, k.MemoryKiB, k.Threads = 1, 8<<10, 1
		return k
	}
}
