package serve

import "context"

// probedSnapshots adds a cheap current-version probe to a Snapshots source.
type probedSnapshots struct {
	Snapshots
	probe func(ctx context.Context) (int64, error)
}

func (p probedSnapshots) CurrentVersion(ctx context.Context) (int64, error) { return p.probe(ctx) }

// WithVersionProbe returns s with a version probe: polling then reads only
// the current version and fetches the blob when it differs from the serving
// one (instead of fetching megabytes every PollInterval). The probe returns
// an error wrapping ErrNoSnapshot when none is published.
func WithVersionProbe(s Snapshots, probe func(ctx context.Context) (int64, error)) Snapshots {
	return probedSnapshots{Snapshots: s, probe: probe}
}
