/**
 * A deliberately small subset of JSONPath, used to find the job id and the status in a vendor's
 * callback body. Used twice: at synth time to validate the construct's props (so a bad path fails
 * `cdk synth`, not the first callback), and in the callback processor to read the values.
 * No dependencies: this file is part of the construct library and of the Lambda bundle.
 *
 * Accepted forms (a path is a chain of property names and array indexes):
 * - `$` alone: the whole document
 * - `$.a.b`, `$.a-b.c`: dotted property names (letters, digits, `_` and `-`, not starting with a digit or `-`)
 * - `$.a[0].b`: array indexes
 * - `$['a b'].c`, `$["a.b"]`: bracket-quoted property names, for any other characters (no escapes)
 * - `a.b`, `a[0]`: the same without the leading `$`
 * Wildcards, filters, slices, unions and recursive descent are rejected: a callback must name one value.
 */

const ACCEPTED_FORMS = "$.a.b, $.a[0].b, $['a-b'].c or a.b ($ alone means the whole document)";

/** A dotted property name. */
const NAME = /^[A-Za-z_][A-Za-z0-9_-]*/;
/** `[0]`: an array index (no leading zeros, so a path has one spelling). */
const INDEX = /^\[(0|[1-9][0-9]*)\]/;
/** `['name']` or `["name"]`: a quoted property name; the quote character may not appear inside. */
const QUOTED = /^\[(?:'([^']+)'|"([^"]+)")\]/;

/**
 * Splits a simple JSONPath into its segments: property names and array indexes (as decimal strings).
 * `$` gives `[]`.
 *
 * @throws Error quoting the path and the accepted forms when the path is not one of the accepted forms.
 */
export function parseSimplePath(path: string): string[] {
  // Props may come from JavaScript callers, where the type is not checked.
  if (typeof path !== 'string') {
    throw new Error(`Invalid path ${JSON.stringify(path)}: expected a string such as ${ACCEPTED_FORMS}`);
  }
  const fail = (position: number, problem: string): never => {
    throw new Error(`Invalid path "${path}": ${problem} at character ${position + 1}; expected a simple JSONPath such as ${ACCEPTED_FORMS}. `
      + 'Wildcards, filters, slices and recursive descent are not supported.');
  };

  const segments: string[] = [];
  let rest: string;
  if (path.startsWith('$')) {
    rest = path.slice(1);
  } else {
    // Without `$` the path must start with a property name (`a.b`), never with `.` or `[`.
    const first = NAME.exec(path);
    if (!first) {
      return fail(0, path === '' ? 'empty path' : 'expected "$" or a property name');
    }
    segments.push(first[0]);
    rest = path.slice(first[0].length);
  }

  while (rest.length > 0) {
    const position = path.length - rest.length;
    if (rest.startsWith('.')) {
      const name = NAME.exec(rest.slice(1));
      if (!name) {
        return fail(position + 1, 'expected a property name after "."');
      }
      segments.push(name[0]);
      rest = rest.slice(1 + name[0].length);
      continue;
    }
    const index = INDEX.exec(rest);
    if (index) {
      segments.push(index[1]);
      rest = rest.slice(index[0].length);
      continue;
    }
    const quoted = QUOTED.exec(rest);
    if (quoted) {
      segments.push(quoted[1] ?? quoted[2]);
      rest = rest.slice(quoted[0].length);
      continue;
    }
    return fail(position, `unexpected "${rest[0]}"`);
  }
  return segments;
}

/**
 * Reads the value at the given segments (from {@link parseSimplePath}). Returns `undefined` when any
 * step is missing or of the wrong kind (an index into a non-array, a name into a non-object).
 * Only own properties are read, so a path like `$.constructor` never reaches the prototype.
 */
export function getAtPath(obj: unknown, segments: string[]): unknown {
  let current: unknown = obj;
  for (const segment of segments) {
    if (Array.isArray(current)) {
      // Arrays are only indexed by decimal indexes, never by names like `length`.
      current = /^(0|[1-9][0-9]*)$/.test(segment) ? current[Number(segment)] : undefined;
    } else if (typeof current === 'object' && current !== null && Object.prototype.hasOwnProperty.call(current, segment)) {
      current = (current as Record<string, unknown>)[segment];
    } else {
      return undefined;
    }
  }
  return current;
}
