package web

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parseForm reads a urlencoded POST body. The body is already capped by
// withHeaders; other content types are refused so nothing is parsed by
// surprise (multipart would buffer files).
func parseForm(r *http.Request) (url.Values, error) {
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, &Error{Status: http.StatusUnsupportedMediaType, Message: "send the form as application/x-www-form-urlencoded"}
		}
	}
	if err := r.ParseForm(); err != nil {
		return nil, bodyError(err)
	}
	return r.PostForm, nil
}

// bodyError is what a failure to read a request body means to the client:
// 413 past the limit, 408 when it did not arrive in time, 400 otherwise.
func bodyError(err error) error {
	var maxBytes *http.MaxBytesError
	switch {
	case errors.As(err, &maxBytes):
		return maxBytes
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Status: http.StatusRequestTimeout, Message: "the request body did not arrive in time (it is shorter than its Content-Length?)"}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return &Error{Status: http.StatusBadRequest, Message: "the request body ended early (shorter than its Content-Length)"}
	}
	return &Error{Status: http.StatusBadRequest, Message: "the form could not be read: " + err.Error()}
}

// formValue returns a field given at most once, trimmed; a missing field is "".
func formValue(form url.Values, field string, maxLen int) (string, error) {
	vs := form[field]
	if len(vs) > 1 {
		return "", fieldError(field, "given more than once")
	}
	if len(vs) == 0 {
		return "", nil
	}
	v := strings.TrimSpace(vs[0])
	if !utf8.ValidString(v) {
		return "", fieldError(field, "is not valid UTF-8")
	}
	if utf8.RuneCountInString(v) > maxLen {
		return "", fieldError(field, "must be at most %d characters", maxLen)
	}
	return v, nil
}

// formInt parses a required whole number in [lo, hi].
func formInt(form url.Values, field string, lo, hi int64) (int64, error) {
	v, err := formValue(form, field, 20)
	if err != nil {
		return 0, err
	}
	if v == "" {
		return 0, fieldError(field, "is required")
	}
	return parseBounded(field, v, lo, hi)
}

func parseBounded(field, v string, lo, hi int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fieldError(field, "must be a whole number from %d to %d, not %q", lo, hi, truncate(v, 20))
	}
	if n < lo || n > hi {
		return 0, fieldError(field, "must be from %d to %d, not %d", lo, hi, n)
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
