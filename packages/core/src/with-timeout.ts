/** Resolves or rejects like `promise`, or rejects with `message` after `ms` (the timer never outlives it). */
export function withTimeout<T>(promise: Promise<T>, ms: number, message = `no answer within ${ms} ms`): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms)
  })
  promise.catch(() => undefined) // a late failure after the timeout is already reported
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
