package deploy

// The Gateway API kinds the manifests use, which k8s.io/api does not have:
// the fields of sigs.k8s.io/gateway-api v1.6.3 (apis/v1) that a shop route
// needs, decoded strictly so a misspelt or invented field fails, and the
// validation its CRDs would apply to them (enums, patterns, CEL rules).

import (
	"errors"
	"fmt"
	"regexp"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// gwGateway is gateway.networking.k8s.io/v1 Gateway.
type gwGateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		GatewayClassName string       `json:"gatewayClassName"`
		Listeners        []gwListener `json:"listeners"`
	} `json:"spec"`
}

type gwListener struct {
	Name          string  `json:"name"`
	Hostname      *string `json:"hostname,omitempty"`
	Port          int32   `json:"port"`
	Protocol      string  `json:"protocol"`
	AllowedRoutes *struct {
		Namespaces *struct {
			From     string                `json:"from,omitempty"`
			Selector *metav1.LabelSelector `json:"selector,omitempty"`
		} `json:"namespaces,omitempty"`
	} `json:"allowedRoutes,omitempty"`
}

// gwHTTPRoute is gateway.networking.k8s.io/v1 HTTPRoute.
type gwHTTPRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ParentRefs []gwParentRef `json:"parentRefs"`
		Hostnames  []string      `json:"hostnames,omitempty"`
		Rules      []gwRouteRule `json:"rules"`
	} `json:"spec"`
}

type gwParentRef struct {
	Group       *string `json:"group,omitempty"`
	Kind        *string `json:"kind,omitempty"`
	Namespace   *string `json:"namespace,omitempty"`
	Name        string  `json:"name"`
	SectionName *string `json:"sectionName,omitempty"`
	Port        *int32  `json:"port,omitempty"`
}

type gwRouteRule struct {
	Name    *string `json:"name,omitempty"`
	Matches []struct {
		Path *struct {
			Type  string `json:"type,omitempty"`
			Value string `json:"value,omitempty"`
		} `json:"path,omitempty"`
		Method *string `json:"method,omitempty"`
	} `json:"matches,omitempty"`
	BackendRefs []struct {
		Group     *string `json:"group,omitempty"`
		Kind      *string `json:"kind,omitempty"`
		Name      string  `json:"name"`
		Namespace *string `json:"namespace,omitempty"`
		Port      *int32  `json:"port,omitempty"`
		Weight    *int32  `json:"weight,omitempty"`
	} `json:"backendRefs,omitempty"`
	Timeouts *struct {
		Request        *string `json:"request,omitempty"`
		BackendRequest *string `json:"backendRequest,omitempty"`
	} `json:"timeouts,omitempty"`
	// SessionPersistence is experimental-channel (GEP-1619).
	SessionPersistence *gwSessionPersistence `json:"sessionPersistence,omitempty"`
}

type gwSessionPersistence struct {
	SessionName     *string `json:"sessionName,omitempty"`
	AbsoluteTimeout *string `json:"absoluteTimeout,omitempty"`
	Type            *string `json:"type,omitempty"`
	CookieConfig    *struct {
		LifetimeType *string `json:"lifetimeType,omitempty"`
	} `json:"cookieConfig,omitempty"`
}

// gwDuration is the Gateway API's Duration pattern (GEP-2257).
var gwDuration = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

func (g *gwGateway) validate() error {
	var errs []error
	if g.Spec.GatewayClassName == "" {
		errs = append(errs, errors.New("spec.gatewayClassName is required"))
	}
	if len(g.Spec.Listeners) == 0 {
		errs = append(errs, errors.New("spec.listeners: at least one"))
	}
	for i, l := range g.Spec.Listeners {
		if l.Name == "" {
			errs = append(errs, fmt.Errorf("spec.listeners[%d].name is required", i))
		}
		if l.Port < 1 || l.Port > 65535 {
			errs = append(errs, fmt.Errorf("spec.listeners[%d].port %d: want 1..65535", i, l.Port))
		}
		if !slices.Contains([]string{"HTTP", "HTTPS", "TLS", "TCP", "UDP"}, l.Protocol) {
			errs = append(errs, fmt.Errorf("spec.listeners[%d].protocol %q: want HTTP, HTTPS, TLS, TCP or UDP", i, l.Protocol))
		}
		if ar := l.AllowedRoutes; ar != nil && ar.Namespaces != nil && ar.Namespaces.From != "" &&
			!slices.Contains([]string{"All", "Same", "Selector", "None"}, ar.Namespaces.From) {
			errs = append(errs, fmt.Errorf("spec.listeners[%d].allowedRoutes.namespaces.from %q", i, ar.Namespaces.From))
		}
	}
	return errors.Join(errs...)
}

func (r *gwHTTPRoute) validate() error {
	var errs []error
	if len(r.Spec.ParentRefs) == 0 {
		errs = append(errs, errors.New("spec.parentRefs: at least one"))
	}
	for i, p := range r.Spec.ParentRefs {
		if p.Name == "" {
			errs = append(errs, fmt.Errorf("spec.parentRefs[%d].name is required", i))
		}
	}
	for i, rule := range r.Spec.Rules {
		for j, m := range rule.Matches {
			if m.Path != nil && m.Path.Type != "" && !slices.Contains([]string{"Exact", "PathPrefix", "RegularExpression"}, m.Path.Type) {
				errs = append(errs, fmt.Errorf("spec.rules[%d].matches[%d].path.type %q", i, j, m.Path.Type))
			}
		}
		for j, b := range rule.BackendRefs {
			// A Service backend (the default kind) needs its port.
			if b.Name == "" || (b.Kind == nil || *b.Kind == "Service") && b.Port == nil {
				errs = append(errs, fmt.Errorf("spec.rules[%d].backendRefs[%d]: name and, for a Service, port are required", i, j))
			}
		}
		if sp := rule.SessionPersistence; sp != nil {
			if err := sp.validate(); err != nil {
				errs = append(errs, fmt.Errorf("spec.rules[%d].sessionPersistence: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (sp *gwSessionPersistence) validate() error {
	typ := "Cookie" // the CRD's default
	if sp.Type != nil {
		typ = *sp.Type
	}
	if typ != "Cookie" && typ != "Header" {
		return fmt.Errorf("type %q: want Cookie or Header", typ)
	}
	if sp.SessionName != nil && len(*sp.SessionName) > 128 {
		return errors.New("sessionName: at most 128 characters")
	}
	if sp.AbsoluteTimeout != nil && !gwDuration.MatchString(*sp.AbsoluteTimeout) {
		return fmt.Errorf("absoluteTimeout %q: want a Gateway API duration like 24h or 1h30m", *sp.AbsoluteTimeout)
	}
	if cc := sp.CookieConfig; cc != nil {
		if typ != "Cookie" {
			return errors.New("cookieConfig can only be set with type Cookie")
		}
		if cc.LifetimeType != nil {
			switch *cc.LifetimeType {
			case "Session":
			case "Permanent":
				if sp.AbsoluteTimeout == nil {
					return errors.New("absoluteTimeout must be specified when cookie lifetimeType is Permanent")
				}
			default:
				return fmt.Errorf("cookieConfig.lifetimeType %q: want Permanent or Session", *cc.LifetimeType)
			}
		}
	}
	return nil
}
