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
