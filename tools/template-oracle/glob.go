// The subset of github.com/gobwas/glob (no separators) that batch specs use, written for
// the oracle because the build machine has no module proxy. Mirrors the Rust glob module's
// semantics and error texts.
package main

import "errors"

type globToken struct {
	kind    int // 0 literal, 1 any, 2 single, 3 class
	lit     rune
	negated bool
	ranges  [][2]rune
}

type globPiece struct {
	token *globToken
	alts  [][]globPiece
}

func compileGlob(pattern string) ([][]globToken, error) {
	runes := []rune(pattern)
	pos := 0
	pieces, err := globSequence(runes, &pos, false)
	if err != nil {
		return nil, err
	}
	if pos < len(runes) {
		return nil, errors.New("unexpected end of alternatives")
	}
	return globExpand(pieces)
}

func globSequence(runes []rune, pos *int, inside bool) ([]globPiece, error) {
	var pieces []globPiece
	for *pos < len(runes) {
		c := runes[*pos]
		switch {
		case inside && (c == ',' || c == '}'):
			return pieces, nil
		case c == '*':
			*pos++
			if len(pieces) == 0 || pieces[len(pieces)-1].token == nil || pieces[len(pieces)-1].token.kind != 1 {
				pieces = append(pieces, globPiece{token: &globToken{kind: 1}})
			}
		case c == '?':
			*pos++
			pieces = append(pieces, globPiece{token: &globToken{kind: 2}})
		case c == '\\':
			*pos++
			if *pos >= len(runes) {
				return nil, errors.New("unexpected end of input after escape")
			}
			pieces = append(pieces, globPiece{token: &globToken{kind: 0, lit: runes[*pos]}})
			*pos++
		case c == '[':
			*pos++
			t, err := globClass(runes, pos)
			if err != nil {
				return nil, err
			}
			pieces = append(pieces, globPiece{token: t})
		case c == '{':
			*pos++
			var alts [][]globPiece
			for {
				alt, err := globSequence(runes, pos, true)
				if err != nil {
					return nil, err
				}
				alts = append(alts, alt)
				if *pos < len(runes) && runes[*pos] == ',' {
					*pos++
					continue
				}
				if *pos < len(runes) && runes[*pos] == '}' {
					*pos++
					break
				}
				return nil, errors.New("unexpected end of input in alternatives")
			}
			pieces = append(pieces, globPiece{alts: alts})
		default:
			*pos++
			pieces = append(pieces, globPiece{token: &globToken{kind: 0, lit: c}})
		}
	}
	return pieces, nil
}

func globClass(runes []rune, pos *int) (*globToken, error) {
	t := &globToken{kind: 3}
	if *pos < len(runes) && runes[*pos] == '!' {
		t.negated = true
		*pos++
	}
	for {
		if *pos >= len(runes) {
			return nil, errors.New("unexpected end of input in character class")
		}
		c := runes[*pos]
		*pos++
		if c == ']' {
			break
		}
		if *pos+1 < len(runes) && runes[*pos] == '-' && runes[*pos+1] != ']' {
			hi := runes[*pos+1]
			*pos += 2
			if hi < c {
				return nil, errors.New("hi character should be greater than lo character")
			}
			t.ranges = append(t.ranges, [2]rune{c, hi})
		} else {
			t.ranges = append(t.ranges, [2]rune{c, c})
		}
	}
	if len(t.ranges) == 0 {
		return nil, errors.New("empty character class")
	}
	return t, nil
}

func globExpand(pieces []globPiece) ([][]globToken, error) {
	results := [][]globToken{{}}
	for _, p := range pieces {
		if p.token != nil {
			for i := range results {
				results[i] = append(append([]globToken{}, results[i]...), *p.token)
			}
			continue
		}
		var expanded [][]globToken
		for _, alt := range p.alts {
			e, err := globExpand(alt)
			if err != nil {
				return nil, err
			}
			expanded = append(expanded, e...)
		}
		var next [][]globToken
		for _, r := range results {
			for _, e := range expanded {
				combined := append(append([]globToken{}, r...), e...)
				next = append(next, combined)
				if len(next) > 4096 {
					return nil, errors.New("too many alternatives in pattern")
				}
			}
		}
		results = next
	}
	return results, nil
}

func globTokenMatches(t globToken, c rune) bool {
	switch t.kind {
	case 0:
		return t.lit == c
	case 2:
		return true
	case 3:
		inside := false
		for _, r := range t.ranges {
			if r[0] <= c && c <= r[1] {
				inside = true
			}
		}
		return inside != t.negated
	}
	return false
}

func globMatchTokens(tokens []globToken, text []rune) bool {
	ti, xi := 0, 0
	starT, starX := -1, -1
	for xi < len(text) {
		if ti < len(tokens) {
			if tokens[ti].kind == 1 {
				starT, starX = ti, xi
				ti++
				continue
			}
			if globTokenMatches(tokens[ti], text[xi]) {
				ti++
				xi++
				continue
			}
		}
		if starT < 0 {
			return false
		}
		ti = starT + 1
		starX++
		xi = starX
	}
	for ; ti < len(tokens); ti++ {
		if tokens[ti].kind != 1 {
			return false
		}
	}
	return true
}

func globMatch(in, pattern string) (bool, error) {
	alts, err := compileGlob(pattern)
	if err != nil {
		return false, err
	}
	text := []rune(in)
	for _, a := range alts {
		if globMatchTokens(a, text) {
			return true, nil
		}
	}
	return false, nil
}
