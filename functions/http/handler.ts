/** What every runtime adapter serves: the registry, or the registry wrapped by middleware. */
export interface RequestHandler {
  handle(request: Request): Promise<Response>;
}
