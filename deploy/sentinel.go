package deploy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"text/template"
	"time"
)

// Defaults of the shop's Sentinel setup, shared by the harness and compose.
const (
	// SentinelMaster is the name the sentinels monitor the primary under,
	// the shop's -redis-master default.
	SentinelMaster = "shop"
	// SentinelDownAfter is how long a primary may be silent before a
	// sentinel considers it down.
	SentinelDownAfter = time.Second
	// SentinelFailoverTimeout bounds a failover and spaces the retries of a
	// failed one.
	SentinelFailoverTimeout = 3 * time.Second
	// SentinelPort is the port sentinels listen on in compose.
	SentinelPort = 26379
)

//go:embed sentinel/sentinel.conf.tmpl
var sentinelTemplate string

// SentinelConfig describes one sentinel's configuration file.
type SentinelConfig struct {
	Port        int    // port the sentinel listens on
	Bind        string // address to bind; "" binds every interface
	Dir         string // working directory; "" keeps the process's own
	Master      string // monitored name; "" is SentinelMaster
	PrimaryHost string // the primary at start: an address or, with Hostnames, a host name
	PrimaryPort int
	Quorum      int // sentinels that must agree the primary is down; 0 is 2
	// Hostnames makes sentinels resolve and announce host names instead of
	// addresses: for containers, whose addresses change.
	Hostnames bool
	// AnnounceIP is the address or, with Hostnames, the host name this
	// sentinel gives the others; "" lets Redis pick its address.
	AnnounceIP      string
	DownAfter       time.Duration // 0 is SentinelDownAfter
	FailoverTimeout time.Duration // 0 is SentinelFailoverTimeout
}

// SentinelRendering is one sentinel configuration committed under
// deploy/sentinel.
type SentinelRendering struct {
	File   string // file name inside deploy/sentinel
	Config SentinelConfig
}

// SentinelRenderings lists the sentinel configurations docker-compose.yml's
// ha profile mounts: three sentinels watching the compose service redis,
// each announcing its own service name. `go generate ./deploy/` writes them;
// a test keeps them fresh.
func SentinelRenderings() []SentinelRendering {
	var rs []SentinelRendering
	for i := 1; i <= 3; i++ {
		name := "sentinel" + strconv.Itoa(i)
		rs = append(rs, SentinelRendering{
			File: "compose-" + name + ".conf",
			Config: SentinelConfig{
				Port:        SentinelPort,
				Dir:         "/data",
				PrimaryHost: "redis",
				PrimaryPort: 6379,
				Hostnames:   true,
				AnnounceIP:  name,
			},
		})
	}
	return rs
}

// sentinelData is what sentinel.conf.tmpl sees.
type sentinelData struct {
	SentinelConfig
	DownAfterMillis       int64
	FailoverTimeoutMillis int64
}

// hostPattern admits addresses and host names and nothing that could end a
// directive or open a quote.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)

// RenderSentinel renders a sentinel configuration file for c.
func RenderSentinel(c SentinelConfig) ([]byte, error) {
	if c.Master == "" {
		c.Master = SentinelMaster
	}
	if c.Quorum == 0 {
		c.Quorum = 2
	}
	if c.DownAfter == 0 {
		c.DownAfter = SentinelDownAfter
	}
	if c.FailoverTimeout == 0 {
		c.FailoverTimeout = SentinelFailoverTimeout
	}
	if err := checkSentinel(c); err != nil {
		return nil, fmt.Errorf("deploy: render sentinel: %w", err)
	}
	tmpl, err := template.New("sentinel.conf").Option("missingkey=error").Parse(sentinelTemplate)
	if err != nil {
		return nil, fmt.Errorf("deploy: parse sentinel template: %w", err)
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, sentinelData{
		SentinelConfig:        c,
		DownAfterMillis:       c.DownAfter.Milliseconds(),
		FailoverTimeoutMillis: c.FailoverTimeout.Milliseconds(),
	})
	if err != nil {
		return nil, fmt.Errorf("deploy: render sentinel: %w", err)
	}
	return buf.Bytes(), nil
}

func checkSentinel(c SentinelConfig) error {
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port %d: want 1..65535", c.Port)
	}
	if c.PrimaryPort < 1 || c.PrimaryPort > 65535 {
		return fmt.Errorf("primary port %d: want 1..65535", c.PrimaryPort)
	}
	if !namePattern.MatchString(c.Master) {
		return fmt.Errorf("master %q: want letters, digits, '-' or '_'", c.Master)
	}
	if !hostPattern.MatchString(c.PrimaryHost) {
		return fmt.Errorf("primary host %q: want an address or a host name", c.PrimaryHost)
	}
	for what, v := range map[string]string{"bind": c.Bind, "announce ip": c.AnnounceIP} {
		if v != "" && !hostPattern.MatchString(v) {
			return fmt.Errorf("%s %q: want an address or a host name", what, v)
		}
	}
	if c.Dir != "" && !pathPattern.MatchString(c.Dir) {
		return fmt.Errorf("dir %q: path has spaces or quotes", c.Dir)
	}
	if c.Quorum < 1 {
		return fmt.Errorf("quorum %d: want at least 1", c.Quorum)
	}
	if c.DownAfter < time.Millisecond || c.FailoverTimeout < time.Millisecond {
		return errors.New("down-after and failover timeout: want at least 1 ms")
	}
	return nil
}
