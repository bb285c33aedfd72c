package price

import (
	"strings"
	"testing"
)

// TestParse: the bench's JSON reads back; a broken file is an error that
// names the package, not figures made up.
func TestParse(t *testing.T) {
	m, err := Parse([]byte(`{"machine":"2 CPUs","clients":32,"profiles":[{"profile":"stateful","throughput":800,"shared":[]},{"profile":"stateless","throughput":600,"shared":[{"name":"redis","rss_bytes":1048576}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := m.Find("stateless")
	if !ok || !m.Complete() || s.SharedRSS() != 1<<20 || m.Clients != 32 {
		t.Errorf("Parse = %+v", m)
	}
	if m, _ := Parse([]byte(`{}`)); m.Complete() {
		t.Error("an empty file counts as a measurement")
	}
	if _, err := Parse([]byte(`{"profiles":`)); err == nil || !strings.HasPrefix(err.Error(), "price: ") {
		t.Errorf("a broken file: %v", err)
	}
}
