package deploy

import (
	"strings"
	"testing"
)

func TestRenderSentinel(t *testing.T) {
	good := func() SentinelConfig {
		return SentinelConfig{Port: 26379, Bind: "127.0.0.1", PrimaryHost: "127.0.0.1", PrimaryPort: 6379}
	}
	conf, err := RenderSentinel(good())
	if err != nil {
		t.Fatalf("RenderSentinel(valid config): %v", err)
	}
	for _, want := range []string{
		"port 26379\n", "bind 127.0.0.1\n",
		"sentinel monitor shop 127.0.0.1 6379 2\n",
		"sentinel down-after-milliseconds shop 1000\n",
		"sentinel failover-timeout shop 3000\n",
	} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("rendering lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(string(conf), "hostnames") {
		t.Errorf("rendering without Hostnames mentions hostnames:\n%s", conf)
	}

	tests := []struct {
		name   string
		change func(*SentinelConfig)
	}{
		{"no port", func(c *SentinelConfig) { c.Port = 0 }},
		{"no primary port", func(c *SentinelConfig) { c.PrimaryPort = 0 }},
		{"no primary host", func(c *SentinelConfig) { c.PrimaryHost = "" }},
		{"primary host injects a directive", func(c *SentinelConfig) { c.PrimaryHost = "redis 6379 1\nsentinel auth-pass shop x" }},
		{"master with spaces", func(c *SentinelConfig) { c.Master = "my shop" }},
		{"announce ip injects", func(c *SentinelConfig) { c.AnnounceIP = "a b" }},
		{"dir with quotes", func(c *SentinelConfig) { c.Dir = `/tmp/"x"` }},
		{"negative quorum", func(c *SentinelConfig) { c.Quorum = -1 }},
		{"sub-millisecond down-after", func(c *SentinelConfig) { c.DownAfter = 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.change(&c)
			if conf, err := RenderSentinel(c); err == nil {
				t.Errorf("RenderSentinel(%+v) = nil error, want one; rendered:\n%s", c, conf)
			}
		})
	}
}
