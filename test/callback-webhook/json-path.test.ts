import { getAtPath, parseSimplePath } from '../../src/callback-webhook/json-path';

describe('parseSimplePath', () => {
  test.each([
    ['$', []],
    ['$.jobId', ['jobId']],
    ['$.a.b', ['a', 'b']],
    ['$.a[0].b', ['a', '0', 'b']],
    ['$.items[12]', ['items', '12']],
    ['$[3]', ['3']],
    ["$['a-b'].c", ['a-b', 'c']],
    ['$["a.b"]', ['a.b']],
    ["$['with space'][0]", ['with space', '0']],
    ['$.job-id', ['job-id']],
    ['$._x1', ['_x1']],
    ['a.b', ['a', 'b']],
    ['a[0].b', ['a', '0', 'b']],
    ['jobId', ['jobId']],
  ])('GIVEN %s WHEN parsed THEN gives the segments %j', (path, expected) => {
    expect(parseSimplePath(path)).toEqual(expected);
  });

  test.each([
    '',
    '$.',
    '$..a',
    '$.a.',
    '$.*',
    '$[*]',
    '$.a[*].b',
    '$.a[-1]',
    '$.a[01]',
    '$.a[0:2]',
    '$.a[?(@.b)]',
    "$['']",
    "$['a'",
    "$['a\"]",
    '$.0abc',
    '$ .a',
    '$.a b',
    '.a',
    '[0]',
    '-a',
    'a..b',
    '$$',
    '$a',
  ])('GIVEN the unsupported path %j WHEN parsed THEN throws an error quoting it and the accepted form', (path) => {
    expect(() => parseSimplePath(path)).toThrow(`Invalid path "${path}"`);
    expect(() => parseSimplePath(path)).toThrow("expected a simple JSONPath such as $.a.b, $.a[0].b, $['a-b'].c or a.b");
  });

  test('GIVEN a path with a bad character WHEN parsed THEN the error says where', () => {
    expect(() => parseSimplePath('$.a.*')).toThrow('expected a property name after "." at character 5');
    expect(() => parseSimplePath('$.a[*]')).toThrow('unexpected "[" at character 4');
  });

  test('GIVEN a non-string (from a JavaScript caller) WHEN parsed THEN throws', () => {
    expect(() => parseSimplePath(42 as unknown as string)).toThrow('Invalid path 42: expected a string');
  });
});

describe('getAtPath', () => {
  const doc = {
    'jobId': 'job-1',
    'count': 0,
    'a': { b: { c: null } },
    'items': [{ id: 'first' }, { id: 'second' }],
    'a-b': { c: true },
  };

  test.each([
    ['$', doc],
    ['$.jobId', 'job-1'],
    ['$.count', 0],
    ['$.a.b.c', null],
    ['$.items[1].id', 'second'],
    ["$['a-b'].c", true],
    ['items[0].id', 'first'],
  ])('GIVEN a document WHEN reading %s THEN gives the value', (path, expected) => {
    expect(getAtPath(doc, parseSimplePath(path))).toEqual(expected);
  });

  test.each([
    '$.missing',
    '$.jobId.length',
    '$.a.b.c.d',
    '$.items[2]',
    '$.items.length',
    '$.items.id',
    '$.a[0]',
    '$.constructor',
    '$.a.toString',
    '$.__proto__',
  ])('GIVEN a document WHEN reading the absent %s THEN gives undefined', (path) => {
    expect(getAtPath(doc, parseSimplePath(path))).toBeUndefined();
  });

  test('GIVEN a scalar or null document WHEN reading a property THEN gives undefined', () => {
    expect(getAtPath('text', ['length'])).toBeUndefined();
    expect(getAtPath(null, ['a'])).toBeUndefined();
    expect(getAtPath(undefined, ['a'])).toBeUndefined();
    expect(getAtPath(7, [])).toBe(7);
  });
});
