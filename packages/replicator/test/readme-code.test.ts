import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import ts from 'typescript'

// The TypeScript blocks of the README and of docs/ must compile against the real API, so the
// documentation cannot drift from the code. (They are type-checked, not run: they need the
// user's databases.)
const root = fileURLToPath(new URL('../../../', import.meta.url))
const documents = ['README.md', ...readdirSync(`${root}docs`).map((name) => `docs/${name}`)].filter((name) =>
  name.endsWith('.md'),
)
const blocks = documents.flatMap((document) =>
  [...readFileSync(`${root}${document}`, 'utf8').matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => ({
    document,
    code: match[1]!,
  })),
)
const dir = `${root}packages/replicator/test/.readme-blocks`

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('README and docs code blocks', () => {
  it('has TypeScript examples, in the README and in docs/', () => {
    expect(blocks.filter((block) => block.document === 'README.md').length).toBeGreaterThanOrEqual(3)
    expect(blocks.filter((block) => block.document.startsWith('docs/')).length).toBeGreaterThanOrEqual(5)
  })

  it('every TypeScript block compiles against the packages', () => {
    mkdirSync(dir, { recursive: true })
    const files = blocks.map(({ document, code }, index) => {
      const file = `${dir}/${document.replace(/[/.]/g, '-')}-block-${index + 1}.ts`
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
