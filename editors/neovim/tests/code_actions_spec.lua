-- Code actions in real Neovim with the real server: `vim.lsp.buf.code_action()` lists them, Neovim
-- resolves the one picked (`codeAction/resolve`: the server writes the edit only then) and applies it.
-- The buffer must change only inside the action's range and still parse, checked with the C parser
-- that Neovim ships (an oracle independent of the server's tree-sitter).

local helpers = require("helpers")
local eq, ok = helpers.eq, helpers.ok

local child = helpers.child()

after_all(function()
  child:stop()
end)

--- The buffer's text, lines joined with "\n" and a final "\n".
local function buffer_text()
  return child:lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\\n') .. '\\n'")
end

--- Whether `text` parses as C without errors, by Neovim's own tree-sitter C parser.
local function parses_as_c(text)
  return child:lua("return not vim.treesitter.get_string_parser(..., 'c'):parse()[1]:root():has_error()", text)
end

--- Runs vim.lsp.buf.code_action() on the cursor's line (with `context`, if given), applying the one
--- action whose title is `title`. Returns the action as listed (its data holds the range it edits) and
--- as the server resolved it, once Neovim has the resolved one.
local function apply_action(title, context)
  child:lua(
    [[
    local title, context = ...
    _G.picked, _G.resolved = nil, nil
    local client = vim.lsp.get_clients({ bufnr = 0, name = "codestral" })[1]
    local request = client.request
    client.request = function(self, method, params, handler, ...)  -- to see what resolve answered
      if method == "codeAction/resolve" then
        local inner = handler
        handler = function(err, result, ...)
          _G.resolved = result or { error = err }
          return inner(err, result, ...)
        end
      end
      return request(self, method, params, handler, ...)
    end
    vim.lsp.buf.code_action({
      context = context,
      apply = true,
      filter = function(action)
        if action.title == title then
          _G.picked = action
          return true
        end
        return false
      end,
    })
  ]],
    title,
    context
  )
  local picked = child:wait("_G.picked", 30000)
  eq(vim.NIL, picked.edit or vim.NIL, "the listed action carries no edit (it is made on resolve)")
  return picked, child:wait("_G.resolved", 120000)
end

--- Waits until the buffer's text differs from `before`; returns it.
local function changed_from(before)
  child:wait("table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\\n') .. '\\n' ~= ...", 30000, before)
  return buffer_text()
end

describe("code actions with the real server", function()
  it("lists the stub's action with vim.lsp.buf.code_action() and applies its edit within its range", function()
    child:lua("require('codestral').setup(...)", { cmd = helpers.server_cmd(), auto_trigger = false })
    child:edit("shapes.c", {
      "/* The area of a w by h rectangle. */",
      "int area(int w, int h) {",
      "}",
      "",
      "int main(void) {",
      "  return area(2, 3);",
      "}",
    })
    child:wait_ready()
    child:lua("vim.api.nvim_win_set_cursor(0, { 2, 0 })")
    local before = buffer_text()
    ok(parses_as_c(before), "the file parses before")

    local action, resolved = apply_action("Codestral: complete body of area")
    ok(resolved.edit, "resolved to no edit: " .. vim.inspect(resolved))
    local after = changed_from(before)
    -- data.start and data["end"] are the range as offsets of the text (ASCII: bytes); Lua strings count from 1.
    local start, stop = action.data.start, action.data["end"]
    eq("int area(int w, int h) {", before:sub(start - 23, start), "the range starts after the body's brace")
    eq(before:sub(1, start), after:sub(1, start), "text before the range")
    eq(before:sub(stop + 1), after:sub(#after - (#before - stop) + 1), "text after the range")
    ok(#after > #before, "the body was written")
    ok(parses_as_c(after), "the file parses after the edit:\n" .. after)
  end)

  it("applies a quick fix for a diagnostic set with vim.diagnostic.set, within its statement", function()
    child:edit("twice.c", {
      "int twice(int x) {",
      "  int y = x +* 2;",
      "  return y;",
      "}",
    })
    child:lua("vim.api.nvim_win_set_cursor(0, { 2, 0 })")
    child:lua([[
      local ns = vim.api.nvim_create_namespace("codestral-test")
      vim.diagnostic.set(ns, 0, { { lnum = 1, col = 13, end_lnum = 1, end_col = 14, message = "expected expression",
                                    severity = vim.diagnostic.severity.ERROR, source = "clangd" } })
    ]])
    local before = buffer_text()
    -- Neovim sends a server only its own diagnostics unless the caller passes them: as another
    -- server's would be, these are given in the request's context.
    local context = child:lua("return { diagnostics = vim.lsp.diagnostic.from(vim.diagnostic.get(0, { lnum = 1 })) }")
    local _, resolved = apply_action("Codestral: fix line 2", context)
    if resolved.edit == nil then -- a fix that would not parse comes back without an edit, its title says why
      ok(resolved.title:find("(no edit: ", 1, true), "no edit, and no reason: " .. vim.inspect(resolved))
      io.stdout:write("     (resolved without an edit: " .. resolved.title .. ")\n")
      vim.wait(200)
      eq(before, buffer_text(), "the buffer without an edit")
      return
    end
    local after = changed_from(before)
    local first, rest = "int twice(int x) {\n  ", "\n  return y;\n}\n"
    eq(first, after:sub(1, #first), "text before the statement")
    eq(rest, after:sub(-#rest), "text after the statement")
    ok(parses_as_c(after), "the file parses after the fix:\n" .. after)
  end)
end)
