// docker-compose.yml read by compose-go, the loader docker compose itself
// uses, schema validation included.

package deploy

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

func loadCompose(t *testing.T, path string, env map[string]string) composeProject {
	t.Helper()
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	// Only env: neither the caller's environment nor a .env file leaks in.
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithEnv(environ),
		cli.WithDefaultProfiles(), // COMPOSE_PROFILES from env, as docker compose does
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}

	p := composeProject{Services: make(map[string]composeService)}
	for name := range project.Volumes {
		p.Volumes = append(p.Volumes, name)
	}
	for name, svc := range project.Services {
		s := composeService{
			Image:       svc.Image,
			User:        svc.User,
			Command:     svc.Command,
			Environment: make(map[string]string),
			DependsOn:   make(map[string]string),
			Tmpfs:       svc.Tmpfs,
		}
		if svc.Build != nil {
			s.Build = &composeBuild{Context: svc.Build.Context, Dockerfile: svc.Build.Dockerfile}
			if !filepath.IsAbs(s.Build.Dockerfile) {
				s.Build.Dockerfile = filepath.Join(s.Build.Context, s.Build.Dockerfile)
			}
		}
		for k, v := range svc.Environment {
			if v != nil {
				s.Environment[k] = *v
			}
		}
		if svc.HealthCheck != nil {
			s.Healthcheck = svc.HealthCheck.Test
		}
		for dep, d := range svc.DependsOn {
			s.DependsOn[dep] = d.Condition
		}
		for _, v := range svc.Volumes {
			s.Mounts = append(s.Mounts, composeMount{Type: v.Type, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly})
		}
		for _, port := range svc.Ports {
			s.Ports = append(s.Ports, composePort{Target: port.Target, Published: port.Published})
		}
		p.Services[name] = s
	}
	return p
}
