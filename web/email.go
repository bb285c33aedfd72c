package web

// Account emails in one canonical form, so that one address is one account
// however it was typed, and a look-alike of someone's address is refused
// rather than registered beside it.

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// canonicalEmail returns the form an account's email is stored and looked
// up in, or why the address is refused (a message for the email field):
//
//  1. NFKC: fullwidth letters, ligatures and other compatibility forms
//     become the plain letters they stand for, and NFD equals NFC.
//  2. Invisible characters go: format characters (zero-width space and
//     joiners, direction marks, the soft hyphen, the BOM) and the other
//     default-ignorable code points, variation selectors among them.
//  3. PRECIS UsernameCaseMapped (RFC 8265, with the address as the
//     identifier): lower case, and a refusal of what an identifier may not
//     hold (spaces, symbols, controls, unassigned code points, text that
//     breaks the bidi rule).
//  4. Unicode's "highly restrictive" level (UTS #39, section 5.2) for the
//     local part and each domain label: letters of one script, or Latin
//     with the Han-based sets Japanese, Chinese and Korean write with. A
//     Cyrillic "а" in a Latin name is refused. What no rule can see, a
//     whole name written in another script that looks like a Latin one,
//     stays possible.
func canonicalEmail(s string) (string, string) {
	s = norm.NFKC.String(strings.TrimSpace(s))
	s = strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "", ""
	}
	folded, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		return s, "holds a character an email address cannot have (a space, a symbol or a control character)"
	}
	local, domain, ok := strings.Cut(folded, "@")
	if !ok {
		return folded, ""
	}
	parts := append([]string{local}, strings.Split(domain, ".")...)
	for _, p := range parts {
		if scripts := mixedScripts(p); scripts != nil {
			return folded, fmt.Sprintf("mixes %s letters in %q, so it could pass for another address; type it in one script",
				strings.Join(scripts, " and "), p)
		}
	}
	return folded, ""
}

// invisible reports whether r shows nothing: a format character or a
// default-ignorable code point.
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// allowedMixes are the sets of scripts UTS #39's highly restrictive level
// lets one identifier mix.
var allowedMixes = [][]string{
	{"Latin", "Han", "Hiragana", "Katakana"},
	{"Latin", "Han", "Bopomofo"},
	{"Latin", "Han", "Hangul"},
}

// mixedScripts returns the scripts of s's letters, sorted, when they are
// more than one and not a mix allowedMixes allows; nil otherwise. Common and
// Inherited (digits, punctuation, combining marks) belong to every script.
func mixedScripts(s string) []string {
	var scripts []string
	for _, r := range s {
		name := scriptOf(r)
		if name == "" || slices.Contains(scripts, name) {
			continue
		}
		scripts = append(scripts, name)
	}
	if len(scripts) < 2 {
		return nil
	}
	for _, mix := range allowedMixes {
		if !slices.ContainsFunc(scripts, func(sc string) bool { return !slices.Contains(mix, sc) }) {
			return nil
		}
	}
	slices.Sort(scripts)
	return scripts
}

// scriptOf is the Unicode script of r, "" for Common and Inherited.
func scriptOf(r rune) string {
	if r < 0x80 {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
			return "Latin"
		}
		return ""
	}
	for name, table := range unicode.Scripts {
		if name != "Common" && name != "Inherited" && unicode.Is(table, r) {
			return name
		}
	}
	return ""
}
