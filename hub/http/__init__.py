"""HTTP plumbing: the error vocabulary and its one envelope handler, parsers, middleware
(request log and metrics, CSP), health, media, OpenAPI extras. May import hub.infra, never an app."""
