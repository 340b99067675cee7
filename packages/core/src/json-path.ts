/** `$.replicas.shop[0].uri` for a path of keys and indexes (as validation issues give them). */
export function jsonPath(path: ReadonlyArray<PropertyKey>, root = '$'): string {
  let text = root
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`
    else if (/^[A-Za-z_$][\w$]*$/.test(String(part))) text += `.${String(part)}`
    else text += `[${JSON.stringify(String(part))}]`
  }
  return text
}

/** One problem of a validated value, at its JSON path. */
export interface PathProblem {
  path: string
  message: string
}

/** Validation issues (as zod reports them: key paths) as problems at JSON paths. */
export function problemsAt(
  issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }>,
): PathProblem[] {
  return issues.map((issue) => ({ path: jsonPath(issue.path), message: issue.message }))
}

/** `$.a: message; $.b: message`, for an error message. */
export function listProblems(problems: readonly PathProblem[]): string {
  return problems.map((problem) => `${problem.path}: ${problem.message}`).join('; ')
}
