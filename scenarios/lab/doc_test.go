package lab

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestScenariosDoc keeps docs/scenarios.md and the tables together: every
// whole script on the page (```script) parses, every example line
// (```steps) parses as a step or an expectation, and every form of both
// tables is described there, with its usage as a heading.
func TestScenariosDoc(t *testing.T) {
	data, err := os.ReadFile("../../docs/scenarios.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	blocks := regexp.MustCompile("(?s)```(script|steps)\n(.*?)```").FindAllStringSubmatch(doc, -1)
	scripts, lines := 0, 0
	for _, b := range blocks {
		if b[1] == "script" {
			scripts++
			if _, err := Parse("docs/scenarios.md", b[2]); err != nil {
				t.Errorf("a script on the page does not parse: %v", err)
			}
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(b[2]), "\n") {
			lines++
			// Each line on its own, in a cluster of five replicas with
			// alice shopping: the forms, not their order, are the point.
			ps := newParseState()
			ps.started, ps.replicas, ps.shopped["alice"] = true, 5, true
			if _, err := parseLine(strings.Join(strings.Fields(l), " "), ps); err != nil {
				t.Errorf("docs/scenarios.md example %q: %v", l, err)
			}
		}
	}
	if scripts == 0 || lines < len(steps)+len(expectations) {
		t.Errorf("docs/scenarios.md has %d scripts and %d example lines: fewer than the forms", scripts, lines)
	}
	// The workshop's exercise answer is a script too.
	ws, err := os.ReadFile("../../docs/workshop.md")
	if err != nil {
		t.Fatal(err)
	}
	answers := regexp.MustCompile("(?s)```script\n(.*?)```").FindAllStringSubmatch(string(ws), -1)
	if len(answers) == 0 {
		t.Error("docs/workshop.md has no script: the exercise's answer is gone")
	}
	for _, a := range answers {
		if _, err := Parse("docs/workshop.md", a[1]); err != nil {
			t.Errorf("the workshop's script does not parse: %v", err)
		}
	}
	heading := func(usage string) bool {
		for _, h := range regexp.MustCompile("(?m)^### (.*)$").FindAllStringSubmatch(doc, -1) {
			if strings.Contains(h[1], "`"+usage+"`") {
				return true
			}
		}
		return false
	}
	for _, f := range steps {
		if !heading(f.Usage) {
			t.Errorf("docs/scenarios.md has no heading for the step `%s`", f.Usage)
		}
	}
	for _, f := range expectations {
		if !heading("expect " + f.Usage) {
			t.Errorf("docs/scenarios.md has no heading for `expect %s`", f.Usage)
		}
	}
}
