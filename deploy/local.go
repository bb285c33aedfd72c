package deploy

import (
	"fmt"
	"strconv"
)

// LocalPorts is where the local cluster (the Procfile, run by `make
// cluster`) puts each process, all derived from nginx's port so that two
// clusters can run side by side. With nginx on 8080 they are the
// Procfile's defaults: shop1..shop3 on 8081..8083, Redis on 6379, the
// object store (versitygw) on 7070, goreman's RPC on 8555.
type LocalPorts struct {
	Nginx    int
	Replicas []Replica // shop1..shop3 on Nginx+1..Nginx+3
	Redis    int       // Nginx-1701: 6379 beside 8080
	Objects  int       // the object store, Nginx-1010: 7070 beside 8080
	RPC      int       // goreman's RPC server, Nginx+475: 8555 beside 8080
}

// Local port range: every derived port must stay within 1024..65535.
const (
	localPortMin = 1024 + 1701
	localPortMax = 65535 - 475
)

// PortsFor derives the local cluster's ports from nginx's port, or says why
// that port cannot be one.
func PortsFor(nginx int) (LocalPorts, error) {
	if nginx < localPortMin || nginx > localPortMax {
		return LocalPorts{}, fmt.Errorf("want a port from %d to %d (Redis takes PORT-1701, goreman PORT+475)", localPortMin, localPortMax)
	}
	p := LocalPorts{Nginx: nginx, Redis: nginx - 1701, Objects: nginx - 1010, RPC: nginx + 475}
	for i := 1; i <= 3; i++ {
		p.Replicas = append(p.Replicas, Replica{Name: "shop" + strconv.Itoa(i), Addr: "127.0.0.1:" + strconv.Itoa(nginx+i)})
	}
	return p, nil
}

// Named lists every port with the process that takes it, nginx first.
func (p LocalPorts) Named() []NamedPort {
	out := []NamedPort{{"nginx", p.Nginx}}
	for i, r := range p.Replicas {
		out = append(out, NamedPort{r.Name, p.Nginx + 1 + i})
	}
	return append(out, NamedPort{"redis", p.Redis}, NamedPort{"objects", p.Objects}, NamedPort{"goreman", p.RPC})
}

// NamedPort is a port and the process that listens on it.
type NamedPort struct {
	Name string
	Port int
}
