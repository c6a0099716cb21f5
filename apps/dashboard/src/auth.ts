/**
 * The optional bearer token (`flatrank serve --token FILE`). A request is let in with
 * `Authorization: Bearer <token>` or the `flatrank_token` cookie; a browser gets the cookie by
 * opening any page once with `?token=<token>` (answered with a redirect to the same URL without
 * it, so the token does not stay in the address bar or the history).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { ValidationError } from '@flatrank/protocol';

export const TOKEN_COOKIE = 'flatrank_token';
const MIN_TOKEN_LENGTH = 16;

/** The token in FILE (surrounding whitespace trimmed); at least 16 characters, no spaces. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ValidationError('--token', `--token: cannot read ${file}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const token = text.trim();
  if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token))
    throw new ValidationError(
      '--token',
      `--token: ${file} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (e.g. openssl rand -hex 32 > ${file})`,
    );
  return token;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class TokenCheck {
  private readonly expected: Buffer;
  constructor(token: string) {
    this.expected = digest(token);
  }

  matches(candidate: string | null | undefined): boolean {
    // Fixed-length digests: the comparison time says nothing about the token.
    return typeof candidate === 'string' && timingSafeEqual(digest(candidate), this.expected);
  }

  /** The token the request presents (header first, then cookie), or null. */
  presented(req: IncomingMessage): string | null {
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ')) return auth.slice('Bearer '.length).trim();
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === TOKEN_COOKIE) {
        try {
          return decodeURIComponent(part.slice(eq + 1).trim());
        } catch {
          return null;
        }
      }
    }
    return null;
  }

  cookie(token: string): string {
    return `${TOKEN_COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Strict`;
  }
}
