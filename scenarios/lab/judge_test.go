package lab

import (
	"strings"
	"testing"
	"time"
)

func view(state string, items map[int]int) cartView {
	var v cartView
	v.Replica = "shop1"
	v.Session.State = state
	for p, q := range items {
		v.Cart.Items = append(v.Cart.Items, struct {
			ProductID int `json:"product_id"`
			Quantity  int `json:"quantity"`
		}{p, q})
		v.Cart.Count += q
	}
	return v
}

func TestClassify(t *testing.T) {
	want := map[int]qtyRange{1: {2, 2}, 2: {1, 3}} // product 2: two adds of 1 had no answer
	tests := []struct {
		name      string
		got       cartView
		verdict   string
		fewer     bool
		whyPrefix string
	}{
		{"exact", view("known", map[int]int{1: 2, 2: 1}), Intact, false, ""},
		{"uncertain adds arrived", view("known", map[int]int{1: 2, 2: 3}), Intact, false, ""},
		{"unknown session", view("unknown", nil), Lost, false, "shop1 shows session unknown"},
		{"no cookie", view("none", nil), Lost, false, "shop1 shows session none"},
		{"known but empty", view("known", nil), Lost, false, "shop1 shows session known with 0 items"},
		{"lost update", view("known", map[int]int{1: 1, 2: 1}), Wrong, true, "shop1 shows product 1: 1, want 2"},
		{"too many", view("known", map[int]int{1: 2, 2: 4}), Wrong, false, "shop1 shows product 2: 4, want 1 to 3"},
		{"foreign product", view("known", map[int]int{1: 2, 2: 1, 9: 1}), Wrong, false, "shop1 shows product 9: 1, want 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verdict, why, fewer := classify(want, tt.got)
			if verdict != tt.verdict || fewer != tt.fewer || !strings.HasPrefix(why, tt.whyPrefix) {
				t.Errorf("classify = %s %q fewer=%v, want %s %q… fewer=%v", verdict, why, fewer, tt.verdict, tt.whyPrefix, tt.fewer)
			}
		})
	}
	// A shopper whose adds all failed expects nothing, and an empty cart is right.
	if v, _, _ := classify(map[int]qtyRange{3: {0, 1}}, view("none", nil)); v != Intact {
		t.Errorf("all-uncertain shopper with an empty cart: %s, want intact", v)
	}
}

func TestObservationChecks(t *testing.T) {
	o := observation{
		carts: []CartVerdict{
			{Shopper: "alice", Verdict: Intact, Counts: []int{2, 2, 2}},
			{Shopper: "bob", Verdict: Wrong, Fewer: true, Why: "shop2 shows product 2: 30, want 40", Counts: []int{30, 30, 30}},
		},
		requests: []Request{{Status: 303, Replica: "shop1", Latency: 10 * time.Millisecond}, {Status: 503, Replica: "shop2", Latency: 30 * time.Millisecond}},
		gaveUp:   1,
		// Both requests came before the previous look: this phase has none.
		phaseFrom: 2,
	}
	tests := []struct {
		line   string // what follows "expect"
		ok     bool
		inSeen string
	}{
		{"carts intact", false, "1 of 2 carts intact, 0 lost, 1 wrong (bob: shop2 shows product 2: 30, want 40)"},
		{"lost carts", false, "0 lost"},
		{"lost updates", true, "1 of 2 carts with lost updates"},
		{"cart of alice is 2", true, "cart of alice is intact"},
		{"cart of bob is 40", false, "reads counted [30 30 30]"},
		{"cart of bob is wrong", true, "cart of bob is wrong"},
		{"cart of carol is intact", false, "no shopper named carol"},
		{"traffic on shop4", false, "shop4 served 0 requests"},
		{"traffic on shop2", true, "shop2 served 1 request"},
		{"no traffic on shop4", true, "shop4 served 0 requests"},
		{"no traffic on shop2", false, "shop2 served 1 request"},
		{"shop1 served most requests", false, "shop1 served 1 of 2 answered requests (shop1 1, shop2 1)"},
		{"no failed requests", false, "1 failed request (no answer or 5xx)"},
		{"failed requests", true, "1 failed request "},
		{"no gave-up shoppers", false, "1 shopper action given up"},
		{"gave-up shoppers", true, "1 shopper action given up"},
		{"status 503", true, "1 response with status 503"},
		{"no status 500", true, "0 responses with status 500"},
		{"p99 below 40ms", true, "p99 30.0ms over the run (2 requests)"},
		{"p50 below 5ms", false, "p50 10.0ms over the run"},
		{"p99 below 40ms in this phase", false, "no request"},
		{"at most 5 guesses checked", false, "0 of 0 guessed passwords checked"},
	}
	for _, tt := range tests {
		e, err := parseExpectation(tt.line)
		if err != nil {
			t.Fatal(err)
		}
		ok, seen := e.form.Check(&o, e)
		if ok != tt.ok || !strings.Contains(seen, tt.inSeen) {
			t.Errorf("expect %s: ok=%v %q, want ok=%v and %q", tt.line, ok, seen, tt.ok, tt.inSeen)
		}
	}
}

// TestPhotoChecks: each photo expectation holds for the answers it
// describes and fails for the others, including a photo nobody posted.
func TestPhotoChecks(t *testing.T) {
	missing := photoMissing("shop1")
	looks := map[string]map[string]string{
		"everywhere":  {"shop1": photoServed, "shop2": photoServed, "shop3": photoServed},
		"writer only": {"shop1": photoServed, "shop2": missing, "shop3": missing},
		"lost":        {"shop1": missing, "shop2": missing, "shop3": missing},
		"a 503":       {"shop1": photoServed, "shop2": "503", "shop3": photoServed},
		"a bare 404":  {"shop1": "404", "shop2": "404", "shop3": "404"},
	}
	holds := map[string]string{
		"photo of alice on every replica":   "everywhere",
		"photo of alice only on its writer": "writer only",
		"photo of alice lost":               "lost",
	}
	for text, want := range holds {
		e, err := parseExpectation(text)
		if err != nil {
			t.Fatal(err)
		}
		for name, answers := range looks {
			o := &observation{photos: []PhotoLook{{Shopper: "alice", Key: "k.png", Writer: "shop1", Answers: answers}}}
			ok, seen := e.form.Check(o, e)
			if ok != (name == want) {
				t.Errorf("expect %s with %s: %v (%s)", text, name, ok, seen)
			}
		}
		if ok, seen := e.form.Check(&observation{}, e); ok || !strings.Contains(seen, "no photo") {
			t.Errorf("expect %s without a photo: %v (%s)", text, ok, seen)
		}
	}
}
