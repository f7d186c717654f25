package files

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidUID is wrapped by every UID validation failure.
var ErrInvalidUID = errors.New("files: invalid UID")

// maxUIDLen is the longest UID PS3.5 9.1 allows.
const maxUIDLen = 64

// CleanUID strips the padding a UI value may carry (trailing NUL, PS3.5 6.2,
// and the spaces some senders use) and validates the result against PS3.5
// 9.1: components of digits separated by single dots, at most 64 characters,
// no empty component, and no leading zero in a component other than "0"
// itself. Only such a string is ever used as a path element, so a UID can
// never name "..", a slash or anything outside the data directory.
func CleanUID(s string) (string, error) {
	u := strings.Trim(s, "\x00 ")
	if err := ValidateUID(u); err != nil {
		return "", err
	}
	return u, nil
}

// ValidateUID checks an already unpadded UID; see CleanUID.
func ValidateUID(u string) error {
	switch {
	case u == "":
		return fmt.Errorf("%w: empty", ErrInvalidUID)
	case len(u) > maxUIDLen:
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalidUID, len(u), maxUIDLen)
	}
	start := 0
	for i := 0; i <= len(u); i++ {
		if i < len(u) && u[i] != '.' {
			if c := u[i]; c < '0' || c > '9' {
				return fmt.Errorf("%w: %q has character %q at %d", ErrInvalidUID, u, c, i)
			}
			continue
		}
		comp := u[start:i]
		if comp == "" {
			return fmt.Errorf("%w: %q has an empty component", ErrInvalidUID, u)
		}
		if len(comp) > 1 && comp[0] == '0' {
			return fmt.Errorf("%w: %q has component %q with a leading zero", ErrInvalidUID, u, comp)
		}
		start = i + 1
	}
	return nil
}
