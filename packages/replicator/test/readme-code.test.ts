import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import ts from 'typescript'

// The README's TypeScript blocks must compile against the real API, so the README cannot drift
// from the code. (They are type-checked, not run: they need the user's databases.)
const root = fileURLToPath(new URL('../../../', import.meta.url))
const readme = readFileSync(`${root}README.md`, 'utf8')
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1]!)
const dir = `${root}packages/replicator/test/.readme-blocks`

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('README code blocks', () => {
  it('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(3)
  })

  it('every TypeScript block compiles against the packages', () => {
    mkdirSync(dir, { recursive: true })
    const files = blocks.map((code, index) => {
      const file = `${dir}/block-${index + 1}.ts`
      writeFileSync(file, `${code}\nexport {}\n`)
      return file
    })
    const config = ts.readConfigFile(`${root}tsconfig.json`, ts.sys.readFile)
    const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root)
    const program = ts.createProgram(files, { ...parsed.options, noEmit: true, noUnusedLocals: false })
    const problems = ts
      .getPreEmitDiagnostics(program)
      .filter((diagnostic) => diagnostic.file && files.includes(diagnostic.file.fileName))
      .map((diagnostic) => {
        const { line } = diagnostic.file!.getLineAndCharacterOfPosition(diagnostic.start ?? 0)
        return `${diagnostic.file!.fileName.split('/').pop()}:${line + 1} ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`
      })
    expect(problems).toEqual([])
  }, 60_000)
})
