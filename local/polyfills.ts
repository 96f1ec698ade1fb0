/**
 * aws-local-stepfunctions 3.x calls Promise.withResolvers (Node 22). On Node 20 every Task would
 * fail with a TypeError that a States.ALL Catch swallows. Importing this module installs it once.
 */
const P = Promise as unknown as { withResolvers?: () => unknown };
if (!P.withResolvers) {
  P.withResolvers = () => {
    let resolve!: (value: unknown) => void;
    let reject!: (reason: unknown) => void;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

export {};
