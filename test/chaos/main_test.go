package chaos

import (
	"testing"

	"github.com/specgate/specgate/test/harness/testutil"
)

// TestMain removes the specgate binary the stacks ran.
func TestMain(m *testing.M) { testutil.Main(m) }
