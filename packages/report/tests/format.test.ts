import { describe, expect, it } from 'vitest';
import { ValidationError } from '@flatrank/protocol';
import { formatCsv, formatJson, formatRows, formatTable, parseFormat } from '../src/format.js';

describe('row formats', () => {
  it('CSV quotes what needs quoting; the table aligns and shortens keys', () => {
    expect(formatCsv([{ a: 'x,y', b: 'say "hi"', c: null, d: 1.5 }])).toBe(
      'a,b,c,d\r\n"x,y","say ""hi""",,1.5\r\n',
    );
    const t = formatTable([
      { key: 'a'.repeat(64), v: 0.123456 },
      { key: 'b'.repeat(64), v: 12 },
    ]);
    expect(t.split('\n')[2]).toBe(`${'a'.repeat(12)}  0.1235`);
    expect(t).toContain('(2 rows)');
  });

  it('JSON keeps the column order and fills missing cells with null; parseFormat names what is allowed', () => {
    expect(JSON.parse(formatJson([{ b: 1 }, { a: 'x' }], ['a', 'b']))).toEqual([
      { a: null, b: 1 },
      { a: 'x', b: null },
    ]);
    expect(formatRows('csv', [{ a: 1 }])).toBe('a\r\n1\r\n');
    expect(parseFormat(undefined)).toBe('table');
    expect(parseFormat('CSV', ['csv', 'json'])).toBe('csv');
    expect(() => parseFormat('xml', ['csv', 'json'])).toThrow(ValidationError);
    expect(() => parseFormat('xml', ['csv', 'json'])).toThrow(
      /--format: unknown value "xml"; allowed: csv, json/,
    );
  });
});
