package proc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ports remembers the ports this process handed out and has not released,
// so that two servers in one test binary never get the same one, even after
// a replica died and left its port unbound until its restart. Ports belong
// to the machine, not to a test, hence process-wide state.
var ports = struct {
	mu    sync.Mutex
	given map[int]bool
}{given: make(map[int]bool)}

// lowestPort is the bottom of the range FreePort draws from.
const lowestPort = 15000

// FreePort returns a free loopback port that this process has not handed
// out yet. It draws below the kernel's ephemeral range: a port from that
// range (what listening on :0 gives) can be taken as the source port of any
// outgoing connection (nginx to a replica, a load generator to nginx) while
// its server is down, and the server could not restart on it. Nothing is
// bound when FreePort returns; callers retry with another port when the
// child reports "address already in use", and ReleasePort it once nothing
// will bind it again.
func FreePort() (int, error) {
	hi := ephemeralLow()
	for attempt := range 100 {
		want := 0 // let the kernel choose
		if attempt < 80 && hi-lowestPort >= 1000 {
			want = lowestPort + rand.IntN(hi-lowestPort)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(want)))
		if err != nil {
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ports.mu.Lock()
		taken := ports.given[port]
		ports.given[port] = true
		ports.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, errors.New("proc: found no free loopback port")
}

// ReleasePort lets FreePort hand out port again.
func ReleasePort(port int) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	delete(ports.given, port)
}

// Loopback is 127.0.0.1:port.
func Loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// ephemeralLow is the first port of the kernel's range for outgoing
// connections (Linux default 32768).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return n
}
