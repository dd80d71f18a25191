package redistest

import "testing"

func TestNoTLSBuild(t *testing.T) {
	tests := []struct {
		out  string
		want bool
	}{
		{"\n*** FATAL CONFIG FILE ERROR (Redis 6.2.6) ***\nReading the configuration file, at line 2\n>>> 'tls-port \"6380\"'\nBad directive or wrong number of arguments\n", true},
		{"TLS is not supported in this build", true},
		{"\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n>>> 'appendfsync \"sometimes\"'\nargument(s) must be one of the following: always, everysec, no\n", false},
		{"Could not create server TCP listening socket 127.0.0.1:6379: bind: Address already in use", false},
		{"Failed to configure TLS. Check logs for more info.", false},
	}
	for _, tc := range tests {
		if got := noTLSBuild(tc.out); got != tc.want {
			t.Errorf("noTLSBuild(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}
