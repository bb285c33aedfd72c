package lab

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// The compose driver cannot run here (no Docker): these tests check only the
// commands it would run.
func TestComposeDriverCommands(t *testing.T) {
	var ran []string
	d := &ComposeDriver{URL: "http://localhost:8080", File: "docker-compose.yml", Project: "statelab",
		Run: func(_ context.Context, argv []string) ([]byte, error) {
			ran = append(ran, strings.Join(argv, " "))
			return nil, nil
		}}
	ctx := context.Background()
	url, err := d.Start(ctx, Setup{Replicas: 3, Config: DefaultConfig})
	if err != nil || url != "http://localhost:8080" {
		t.Fatalf("Start = %q, %v", url, err)
	}
	for _, f := range []Fault{{Do: "kill", Target: "shop2"}, {Do: "stop", Target: "redis"}, {Do: "start", Target: "redis"}, {Do: "pause", Target: "redis"}, {Do: "resume", Target: "redis"}, {Do: "replace", Target: "shop1"}} {
		if err := d.Fault(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"docker compose -f docker-compose.yml -p statelab kill shop2",
		"docker compose -f docker-compose.yml -p statelab stop redis",
		"docker compose -f docker-compose.yml -p statelab start redis",
		"docker compose -f docker-compose.yml -p statelab pause redis",
		"docker compose -f docker-compose.yml -p statelab unpause redis",
		"docker compose -f docker-compose.yml -p statelab kill shop1",
		"docker compose -f docker-compose.yml -p statelab up -d --wait --force-recreate --no-deps shop1",
	}
	if strings.Join(ran, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran:\n%s\nwant:\n%s", strings.Join(ran, "\n"), strings.Join(want, "\n"))
	}
	if got := (&ComposeDriver{}).command("kill", "shop1"); strings.Join(got, " ") != "docker compose kill shop1" {
		t.Errorf("bare command = %q", got)
	}
	for _, f := range []Fault{{Do: "add", Target: "shop4"}, {Do: "stop", Target: "shop2", Drain: Drain{Set: true}}} {
		if err := d.Fault(ctx, f); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: %v, want it refused as unsupported", f, err)
		}
	}
}

func TestComposeDriverReportsFailure(t *testing.T) {
	d := &ComposeDriver{Run: func(context.Context, []string) ([]byte, error) {
		return []byte("no such service: shop9"), errors.New("exit status 1")
	}}
	err := d.Fault(context.Background(), Fault{Do: "kill", Target: "shop9"})
	if err == nil || !strings.Contains(err.Error(), "docker compose kill shop9") || !strings.Contains(err.Error(), "no such service") {
		t.Errorf("Kill error = %v", err)
	}
}

// TestComposeReplaceKeepsTheProfile: replace recreates a shop with docker
// compose up, which reads SHOP_PROFILE (and the rest) from the lab's own
// environment: under a profile the lab refuses, with one line naming the
// variable, to recreate a shop from other variables than the cluster's.
func TestComposeReplaceKeepsTheProfile(t *testing.T) {
	for _, env := range []string{"", "stateful"} {
		var ran []string
		d := &ComposeDriver{Getenv: func(k string) string { return map[string]string{"SHOP_PROFILE": env}[k] },
			Run: func(_ context.Context, argv []string) ([]byte, error) {
				ran = append(ran, strings.Join(argv, " "))
				return nil, nil
			}}
		ctx := context.Background()
		if _, err := d.Start(ctx, Setup{Replicas: 3, Config: Config{Profile: "stateless"}}); err != nil {
			t.Fatal(err)
		}
		err := d.Fault(ctx, Fault{Do: "replace", Target: "shop2"})
		if err == nil || !strings.Contains(err.Error(), "SHOP_PROFILE") || len(ran) != 0 {
			t.Errorf("replace under profile stateless with SHOP_PROFILE=%q: %v after %q; want it refused, naming SHOP_PROFILE, before any command", env, err, ran)
		}
	}
	var ran []string
	d := &ComposeDriver{Getenv: func(k string) string { return map[string]string{"SHOP_PROFILE": "stateless"}[k] },
		Run: func(_ context.Context, argv []string) ([]byte, error) {
			ran = append(ran, strings.Join(argv, " "))
			return nil, nil
		}}
	ctx := context.Background()
	if _, err := d.Start(ctx, Setup{Replicas: 3, Config: Config{Profile: "stateless"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Fault(ctx, Fault{Do: "replace", Target: "shop2"}); err != nil || len(ran) != 2 {
		t.Errorf("replace with the cluster's SHOP_PROFILE: %v, ran %q; want kill and up", err, ran)
	}
}
