import type { ClientInfo } from '../auth/access.js';

/** What every runtime adapter serves: the registry, or the registry wrapped by middleware. */
export interface RequestHandler {
  handle(request: Request, client?: ClientInfo): Promise<Response>;
}
