// Package deploy holds streamrec's deployment artefacts — the container image
// (Dockerfile), Kubernetes manifests (k8s/), Prometheus and Grafana
// configuration — and the tests that keep them honest without a Docker engine
// or a cluster: strict decoding of every manifest into the typed Kubernetes
// API objects with cross-reference checks, a strict parse of
// docker-compose.yml checked against the real CLI's flags, and a
// multi-process topology test (broker, Redis, ingest, learn, two servers)
// that restarts components under load. It also simulates partitioned
// learners with item-parameter averaging (docs/operations.md, "When one
// learner is not enough").
//
// The package has no exported API; its value is in its tests.
package deploy
