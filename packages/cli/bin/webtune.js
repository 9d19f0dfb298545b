#!/usr/bin/env node
// The compiled CLI (npm run build); see packages/cli/src/main.ts.
import "../dist/main.js";
