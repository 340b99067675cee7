import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const packages = fileURLToPath(new URL('./packages/', import.meta.url))

export default defineConfig({
  resolve: {
    // Tests run against the TypeScript sources of the workspace packages: no build step first.
    alias: [
      { find: /^@mostajs\/replicator-testkit\/vitest$/, replacement: `${packages}testkit/src/vitest.ts` },
      { find: /^@mostajs\/replicator-([a-z-]+)$/, replacement: `${packages}$1/src/index.ts` },
      { find: /^@mostajs\/replicator-core\/sql$/, replacement: `${packages}core/src/sql/index.ts` },
      { find: /^@mostajs\/replicator$/, replacement: `${packages}replicator/src/index.ts` },
      { find: /^@mostajs\/replicator\/(service|cli)$/, replacement: `${packages}replicator/src/$1/index.ts` },
      { find: /^@mostajs\/replicator-cli$/, replacement: `${packages}cli/src/index.ts` },
    ],
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts'],
    globalSetup: ['packages/testkit/src/vitest-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Each file gets its own databases on the shared servers, so files may run side by side.
    maxWorkers: 2,
    // The JSON report lets CI print one plain summary line and refuse a run that skipped tests.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
})
