#!/usr/bin/env node
// The `flatrank` binary: parses arguments, runs one command, maps typed errors to exit codes.
import { run } from './program.js';

process.exitCode = await run(process.argv);
